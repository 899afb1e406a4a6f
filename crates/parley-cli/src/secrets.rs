//! Where the device lives and the secrets a command needs: from the environment, or asked on the terminal without echo.

use super::*;

pub(crate) fn default_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/parley/default")
}

/// A secret from the environment, or asked for on the terminal without
/// echoing it (from a pipe, the first line of standard input).
pub(crate) fn secret(var: &str, prompt: &str) -> Result<String> {
    use std::io::IsTerminal as _;
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    let line = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{prompt}: ")).context("reading from the terminal")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading standard input")?;
        line
    };
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        bail!("{prompt} is required (or set {var})");
    }
    Ok(line)
}

pub(crate) fn passphrase() -> Result<String> {
    secret("PARLEY_PASSPHRASE", "Local passphrase")
}

/// The recovery passphrase seals the user's root key on the server; it is not
/// the local one, so a stolen laptop's passphrase does not open the account.
pub(crate) fn recovery_passphrase() -> Result<String> {
    secret("PARLEY_RECOVERY_PASSPHRASE", "Recovery passphrase")
}

pub(crate) fn server_file(dir: &Path) -> PathBuf {
    dir.join("server")
}

pub(crate) fn saved_server(dir: &Path) -> Result<String> {
    std::fs::read_to_string(server_file(dir))
        .map(|s| s.trim().to_owned())
        .map_err(|_| anyhow!("no server set for this device: run `parley server <url>` first"))
}
