//! `parley tui`: placeholder until the terminal chat lands.

use anyhow::Result;
use parley_client::account::Account;

pub(crate) async fn run(_account: Account) -> Result<()> {
    anyhow::bail!("the terminal chat is not built yet")
}
