-- `conversation.create` events name the conversation instead of carrying it
-- (its member list, copied into every member's queue, made a large group's
-- creation write megabytes). Events already queued are rewritten to the new
-- shape, so that devices can still read them. Running it twice changes nothing.
UPDATE notifications
SET payload = json_object(
    'type', 'conversation.create',
    'conversation', json_extract(payload, '$.conversation.id'),
    'from', json_extract(payload, '$.conversation.creator'))
WHERE payload LIKE '%"conversation.create"%'
  AND json_extract(payload, '$.type') = 'conversation.create'
  AND json_type(payload, '$.conversation.members') IS NOT NULL;
