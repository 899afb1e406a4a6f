//! People: finding them by handle, their names, connection requests and
//! answers.

use super::*;

/// A connection request waiting for this user's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Who asks.
    pub user: UserId,
    /// Their display name.
    pub name: String,
    /// Their handle, if they chose one.
    pub handle: Option<String>,
}

impl Account {
    /// Finds a user by handle (with or without `@`).
    pub async fn find(&mut self, handle: &str) -> Result<Qualified<UserId>, ClientError> {
        let profile = self
            .api
            .user_by_handle(handle.trim_start_matches('@'))
            .await?;
        if self.state.names.get(&profile.qualified_id.id) != Some(&profile.name) {
            let tx = self.begin().await?;
            self.state
                .names
                .insert(profile.qualified_id.id, profile.name.clone());
            self.commit(tx).await?;
        }
        Ok(profile.qualified_id)
    }

    /// Sets this user's handle.
    pub async fn set_handle(&self, handle: &str) -> Result<(), ClientError> {
        self.api.set_handle(handle).await
    }

    /// Sets this user's display name.
    pub async fn set_name(&self, name: &str) -> Result<(), ClientError> {
        self.api
            .update_profile(&parley_api::UpdateProfile {
                name: Some(name.to_owned()),
                ..parley_api::UpdateProfile::default()
            })
            .await
    }

    /// The name shown for a user.
    pub fn name_of(&self, user: UserId) -> String {
        self.state
            .names
            .get(&user)
            .cloned()
            .unwrap_or_else(|| user.to_string()[..8].to_owned())
    }

    /// Names of these users not known yet, from the server (outside any
    /// transaction; the caller stores them in its own).
    pub(super) async fn fetch_names(
        &self, users: impl IntoIterator<Item = UserId>,
    ) -> BTreeMap<UserId, String> {
        let mut found = BTreeMap::new();
        for user in users {
            if self.state.names.contains_key(&user) || found.contains_key(&user) {
                continue;
            }
            if let Ok(p) = self.api.user_profile(&self.qualified(user)).await {
                found.insert(user, p.name);
            }
        }
        found
    }

    /// Asks to connect with a user.
    pub async fn connect_to(&mut self, user: &Qualified<UserId>) -> Result<(), ClientError> {
        self.api.request_connection(user).await?;
        Ok(())
    }

    /// Blocks a user (connected or not; they are not told): neither can send
    /// to the other, in their 1:1 or in a group, until [`Account::unblock`].
    pub async fn block(&mut self, user: &Qualified<UserId>) -> Result<(), ClientError> {
        self.api
            .update_connection(user, ConnectionStatus::Blocked)
            .await?;
        Ok(())
    }

    /// Takes a block back: the connection is accepted again and the 1:1
    /// conversation is back. Only someone this user was connected with, or
    /// asked by, can be unblocked (the server's `invalid-transition`
    /// otherwise: they can be asked with [`Account::connect_to`]).
    pub async fn unblock(&mut self, user: &Qualified<UserId>) -> Result<(), ClientError> {
        self.api
            .update_connection(user, ConnectionStatus::Accepted)
            .await?;
        self.refresh_conversations().await
    }

    /// Connection requests waiting for this user's answer, with who asks: their
    /// name and handle as their profile says now (names learnt are kept).
    pub async fn requests(&mut self) -> Result<Vec<Request>, ClientError> {
        let pending: Vec<UserId> = self
            .api
            .connections()
            .await?
            .into_iter()
            .filter(|c| c.status == ConnectionStatus::Pending)
            .map(|c| c.to.id)
            .collect();
        let mut requests = Vec::with_capacity(pending.len());
        let mut learnt = BTreeMap::new();
        for user in pending {
            match self.api.user_profile(&self.qualified(user)).await {
                Ok(p) => {
                    learnt.insert(user, p.name.clone());
                    requests.push(Request {
                        user,
                        name: p.name,
                        handle: p.handle,
                    });
                }
                // Gone meanwhile, or not to be read: still a request, by id.
                Err(_) => requests.push(Request {
                    user,
                    name: self.name_of(user),
                    handle: None,
                }),
            }
        }
        if !learnt.is_empty() {
            let tx = self.begin().await?;
            self.state.names.extend(learnt);
            self.commit(tx).await?;
        }
        Ok(requests)
    }

    /// Accepts a connection request; the 1:1 conversation appears.
    pub async fn accept(
        &mut self, user: &Qualified<UserId>,
    ) -> Result<Qualified<ConversationId>, ClientError> {
        let connection = self
            .api
            .update_connection(user, ConnectionStatus::Accepted)
            .await?;
        self.refresh_conversations().await?;
        connection.conversation.ok_or_else(|| {
            ClientError::Decode("the accepted connection has no conversation".into())
        })
    }
}
