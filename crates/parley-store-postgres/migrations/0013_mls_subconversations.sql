-- Subconversations (a call's `conference`): each has a group of its own
-- beside its conversation's, keyed by the conversation and its name (`''` for
-- the conversation's own group), and a generation that a reset moves on.
ALTER TABLE mls_groups ADD COLUMN subconversation TEXT NOT NULL DEFAULT '';
ALTER TABLE mls_groups ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mls_groups DROP CONSTRAINT mls_groups_pkey;
ALTER TABLE mls_groups ADD PRIMARY KEY (conversation_id, subconversation);

ALTER TABLE mls_group_devices ADD COLUMN subconversation TEXT NOT NULL DEFAULT '';
ALTER TABLE mls_group_devices DROP CONSTRAINT mls_group_devices_pkey;
ALTER TABLE mls_group_devices ADD PRIMARY KEY (conversation_id, subconversation, user_id, client_id);
