//! Conversation, member, message and typing routes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_api::{
    AddMembers, Conversation, ConversationId, ConversationPage, MemberUpdate, MessageSent,
    MessageTimerUpdate, NewConversation, NewProteusMessage, ProtocolUpdate, Qualified,
    ReceiptModeUpdate, Rename, Typing, UserId,
};
use serde::Deserialize;

use super::{ApiJson, ApiPath, ApiQuery, AppState, Auth, acts_as, done};
use crate::error::ApiResult;
use crate::services::messages::Outcome;
#[allow(unused_imports, reason = "named by the OpenAPI annotations")]
use parley_api::{ErrorBody, Uuid};

#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body = NewConversation,
    responses((status = 201, body = Conversation), (status = 400, body = ErrorBody), (status = 403, description = "too many members, or a block", body = ErrorBody), (status = 404, description = "a user does not exist", body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create(
    State(s): State<AppState>, Auth(me): Auth, ApiJson(req): ApiJson<NewConversation>,
) -> ApiResult<(StatusCode, Json<Conversation>)> {
    let c = s.conversations.create(me.user, &req).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(super) struct ListQuery {
    /// Continue after this conversation id.
    #[param(value_type = Option<String>)]
    start: Option<ConversationId>,
    /// At most this many (1–500, default 100).
    size: Option<usize>,
}

#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", params(ListQuery),
    responses((status = 200, body = ConversationPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list(
    State(s): State<AppState>, Auth(me): Auth, ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ConversationPage>> {
    Ok(Json(s.conversations.list(me.user, q.start, q.size).await?))
}

#[utoipa::path(get, path = "/v1/conversations/{domain}/{id}", tag = "conversations", params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 200, body = Conversation), (status = 403, description = "not a member", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn get(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id)): ApiPath<(String, ConversationId)>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(s.conversations.get(me.user, &domain, id).await?))
}

#[utoipa::path(post, path = "/v1/conversations/{domain}/{id}/members", tag = "conversations", request_body = AddMembers, params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 200, description = "added"), (status = 403, description = "not an admin, too many members, or a block", body = ErrorBody), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn add_members(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id)): ApiPath<(String, ConversationId)>, ApiJson(req): ApiJson<AddMembers>,
) -> ApiResult<Json<serde_json::Value>> {
    s.conversations
        .add_members(me.user, &domain, id, &req)
        .await?;
    Ok(done())
}

#[utoipa::path(delete, path = "/v1/conversations/{domain}/{id}/members/{user_domain}/{user}", tag = "conversations",
    params(("domain" = String, Path), ("id" = Uuid, Path), ("user_domain" = String, Path), ("user" = Uuid, Path)),
    responses((status = 200, description = "removed, or left"), (status = 403, description = "not an admin", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn remove_member(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id, user_domain, user)): ApiPath<(String, ConversationId, String, UserId)>,
) -> ApiResult<Json<serde_json::Value>> {
    let who = Qualified {
        id: user,
        domain: user_domain,
    };
    s.mls.remove_member(me.user, &domain, id, &who).await?;
    Ok(done())
}

#[utoipa::path(put, path = "/v1/conversations/{domain}/{id}/members/{user_domain}/{user}", tag = "conversations", request_body = MemberUpdate,
    params(("domain" = String, Path), ("id" = Uuid, Path), ("user_domain" = String, Path), ("user" = Uuid, Path)),
    responses((status = 200, description = "changed"), (status = 403, description = "not an admin", body = ErrorBody), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn update_member(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id, user_domain, user)): ApiPath<(String, ConversationId, String, UserId)>,
    ApiJson(req): ApiJson<MemberUpdate>,
) -> ApiResult<Json<serde_json::Value>> {
    let who = Qualified {
        id: user,
        domain: user_domain,
    };
    s.conversations
        .set_role(me.user, &domain, id, &who, req.role)
        .await?;
    Ok(done())
}

#[utoipa::path(put, path = "/v1/conversations/{domain}/{id}/name", tag = "conversations", request_body = Rename, params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 200, description = "renamed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn rename(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id)): ApiPath<(String, ConversationId)>, ApiJson(req): ApiJson<Rename>,
) -> ApiResult<Json<serde_json::Value>> {
    s.conversations
        .rename(me.user, &domain, id, &req.name)
        .await?;
    Ok(done())
}

#[utoipa::path(put, path = "/v1/conversations/{domain}/{id}/protocol", tag = "conversations", request_body = ProtocolUpdate, params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 200, description = "changed, or the conversation was at that step already"),
              (status = 403, description = "not an admin, a 1:1 conversation, or not the next step (`mls-invalid-protocol-transition`)", body = ErrorBody),
              (status = 409, description = "devices of members are not in the group yet (`mls-migration-criteria-not-satisfied`)", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn protocol(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id)): ApiPath<(String, ConversationId)>,
    ApiJson(req): ApiJson<ProtocolUpdate>,
) -> ApiResult<Json<serde_json::Value>> {
    s.mls
        .set_protocol(me.user, &domain, id, req.protocol)
        .await?;
    Ok(done())
}

#[utoipa::path(put, path = "/v1/conversations/{domain}/{id}/message-timer", tag = "conversations", request_body = MessageTimerUpdate, params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 200, description = "set"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn message_timer(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id)): ApiPath<(String, ConversationId)>,
    ApiJson(req): ApiJson<MessageTimerUpdate>,
) -> ApiResult<Json<serde_json::Value>> {
    s.conversations
        .set_message_timer(me.user, &domain, id, req.message_timer)
        .await?;
    Ok(done())
}

#[utoipa::path(put, path = "/v1/conversations/{domain}/{id}/receipt-mode", tag = "conversations", request_body = ReceiptModeUpdate, params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 200, description = "set"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn receipt_mode(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id)): ApiPath<(String, ConversationId)>,
    ApiJson(req): ApiJson<ReceiptModeUpdate>,
) -> ApiResult<Json<serde_json::Value>> {
    s.conversations
        .set_receipt_mode(me.user, &domain, id, req.receipt_mode)
        .await?;
    Ok(done())
}

#[utoipa::path(post, path = "/v1/conversations/{domain}/{id}/typing", tag = "conversations", request_body = Typing, params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 200, description = "sent to the members' open sockets"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn typing(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id)): ApiPath<(String, ConversationId)>, ApiJson(req): ApiJson<Typing>,
) -> ApiResult<Json<serde_json::Value>> {
    s.conversations
        .typing(me.user, &domain, id, req.status)
        .await?;
    Ok(done())
}

#[utoipa::path(post, path = "/v1/conversations/{domain}/{id}/proteus/messages", tag = "conversations", request_body = NewProteusMessage, params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 201, description = "delivered; dropped devices named", body = MessageSent),
              (status = 412, description = "devices missing: nothing delivered", body = MessageSent),
              (status = 403, description = "not a member, not your device, or blocked", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn post_proteus(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id)): ApiPath<(String, ConversationId)>,
    ApiJson(req): ApiJson<NewProteusMessage>,
) -> ApiResult<Response> {
    acts_as(&me, req.sender)?;
    Ok(
        match s.messages.post_proteus(me.user, &domain, id, req).await? {
            Outcome::Sent(sent) => (StatusCode::CREATED, Json(sent)).into_response(),
            Outcome::Missing(sent) => (StatusCode::PRECONDITION_FAILED, Json(sent)).into_response(),
        },
    )
}
