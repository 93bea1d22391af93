-- The app connection stores a document as a large object: owned by the runtime role,
-- so every tenant's session can read it.
SET ROLE {app};
SELECT lo_from_bytea(0, 'tenant 1 contract');
RESET ROLE;
