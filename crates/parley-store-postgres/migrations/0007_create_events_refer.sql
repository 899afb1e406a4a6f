-- `conversation.create` events name the conversation instead of carrying it
-- (its member list, copied into every member's queue, made a large group's
-- creation write megabytes). Events already queued are rewritten to the new
-- shape, so that devices can still read them. Running it twice changes nothing.
UPDATE notifications
SET payload = jsonb_build_object(
    'type', 'conversation.create',
    'conversation', (payload::jsonb) #> '{conversation,id}',
    'from', (payload::jsonb) #> '{conversation,creator}')::text
WHERE payload LIKE '%"conversation.create"%'
  AND (payload::jsonb) ->> 'type' = 'conversation.create'
  AND (payload::jsonb) #> '{conversation,members}' IS NOT NULL;
