//! The model-based test: random sequences of operations on a small world, each
//! applied to the reference model ([`MemoryStore`]) and to the store under test,
//! whose answers must agree step by step.
//!
//! The world is small so that operations collide often: three users with fixed
//! ids (whose text order is not their index order), three e-mail addresses, two
//! handles, devices 1 to 4, two conversations, prekeys 0 to 2 and the last-resort
//! 65535, times 0 to 9. After the sequence, everything the world holds is read on
//! both sides and compared too. Each backend's tests expand
//! [`model_tests!`](crate::model_tests); a failing sequence is shrunk to a short
//! one, and the panic names the step, the operation and both answers. The test
//! body is deterministic given the operations (fixed ids, payloads named by step).
//!
//! Answers are compared whole: values with `==`, refusals by kind and what they
//! name. A backend error on either side fails the test, so operations that SQL
//! refuses with one are skipped while the model says their user does not exist
//! (a cookie, password reset or device of nobody breaks a foreign key).
//!
//! Left out on purpose, where the SQL backends are known to disagree (the model
//! follows SQLite): creating a user whose id *and* e-mail are both taken (SQLite
//! names the e-mail, PostgreSQL the primary key), and the order of
//! `blocks_involving`, which the trait leaves open (compared sorted). Connection
//! changes here are between two different users, so none names a user twice in
//! its notifications (the model, like the backends' shared fan-out, would give
//! each device one event, with the first payload).

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;

pub use proptest;

use ::proptest::test_runner::{Config, TestRunner};
use parley_api::UserId;

use super::Fresh;
use crate::memory::MemoryStore;
use crate::{
    AddedClient, ClientRecord, ConnectionRecord, ConversationRecord, Cookie, EventPage,
    MemberRecord, OneTimeCode, Posted, PrekeyRecord, QueuedEvent, Roster, Store, User,
};

mod apply;
mod world;

use apply::apply;
pub use world::{Change, MAX_OPS, Op, Step, ops};
use world::{EMAILS, observations, pick, user_id};

/// Sequences tried by [`run`] unless `PARLEY_MODEL_CASES` says otherwise.
pub const DEFAULT_CASES: u32 = 256;

/// What an operation answered, in a form two stores' answers compare in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Unit,
    Bool(bool),
    Count(u64),
    Tries(u32),
    Code(Option<OneTimeCode>),
    User(Option<User>),
    Cookies(Vec<Cookie>),
    Bundle(Option<Vec<u8>>),
    Added(AddedClient),
    Clients(Vec<ClientRecord>),
    Generation(Option<u64>),
    Prekey(Option<PrekeyRecord>),
    Endpoint(Option<String>),
    Page(Option<EventPage>),
    Event(Option<QueuedEvent>),
    Connection(Option<ConnectionRecord>),
    Connections(Vec<ConnectionRecord>),
    Users(Vec<UserId>),
    Conversation(Option<ConversationRecord>),
    Conversations(Vec<ConversationRecord>),
    Members(Vec<MemberRecord>),
    Roster(Option<Roster>),
    Posted(Option<Posted>),
}

/// A [`StoreError`](crate::StoreError) other than a backend failure: its kind
/// and what it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Conflict(&'static str),
    NotFound,
    TooManyClients,
    Limit(&'static str),
}

/// An operation's answer; a backend failure is no answer (the test fails on it).
pub type Answer = Result<Value, Refusal>;

async fn user_exists(model: &dyn Store, user: u8) -> bool {
    matches!(model.user(user_id(user)).await, Ok(Some(_)))
}

/// Whether to leave an operation out (see the module): one SQL would refuse
/// with a backend error, or one the SQL backends are known to answer apart.
async fn left_out(model: &dyn Store, op: &Op) -> bool {
    match op {
        Op::AddCookie { user, .. }
        | Op::StartPasswordReset { user, .. }
        | Op::AddClient { user, .. } => !user_exists(model, *user).await,
        Op::CreateUser { user, email } => {
            user_exists(model, *user).await
                && matches!(
                    model.user_by_email(pick(&EMAILS, *email)).await,
                    Ok(Some(_))
                )
        }
        _ => false,
    }
}

/// Applies `ops`, then reads of everything, to a fresh reference model and to
/// `store` (fresh too), comparing every answer.
///
/// # Panics
/// At the first answer that differs from the model's, or that is a backend
/// failure on either side, naming the step, the operation and both answers.
pub async fn agrees_with_model(store: Arc<dyn Store>, ops: &[Op]) {
    let model = MemoryStore::new();
    let observations = observations();
    for (step, op) in ops.iter().chain(&observations).enumerate() {
        if left_out(&model, op).await {
            continue;
        }
        let want = apply(&model, step, op).await;
        let got = apply(&*store, step, op).await;
        let agree = matches!((&want, &got), (Ok(w), Ok(g)) if w == g);
        let phase = if step < ops.len() {
            "operation"
        } else {
            "final read"
        };
        assert!(
            agree,
            "step {step} ({phase}): {op:?}\n  model answered: {want:?}\n  store answered: {got:?}"
        );
    }
}

/// The number of sequences to try: `PARLEY_MODEL_CASES`, or [`DEFAULT_CASES`].
fn cases() -> u32 {
    std::env::var("PARLEY_MODEL_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// The model-based test, as [`model_tests!`](crate::model_tests) expands it:
/// random sequences from [`ops`] (as many as `PARLEY_MODEL_CASES` says,
/// [`DEFAULT_CASES`] otherwise), each run by [`agrees_with_model`] on a fresh
/// store from `open` on a runtime of its own. `open` giving `None` skips the
/// test (it says why, as for the conformance story).
///
/// # Panics
/// With the shortest failing sequence proptest finds, and its first
/// disagreement.
pub fn run<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<Fresh>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the model-based test");
    // The first store also tells whether there is one to test at all.
    let Some(first) = runtime.block_on(open()) else {
        return;
    };
    let spare = Cell::new(Some(first));
    let config = Config {
        cases: cases(),
        // A failing sequence on PostgreSQL costs a database per try: shrink
        // within bounds.
        max_shrink_iters: 1024,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&ops(), |ops| {
        runtime.block_on(async {
            let fresh = match spare.take() {
                Some(fresh) => fresh,
                None => open().await.expect("a fresh store for each sequence"),
            };
            agrees_with_model(fresh.store.clone(), &ops).await;
            drop(fresh);
        });
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("the store disagrees with the reference model: {e}");
    }
}
