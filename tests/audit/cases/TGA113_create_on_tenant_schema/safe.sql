CREATE SCHEMA s;
CREATE TABLE s.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON s.t TO {app};
-- protect: s.t
GRANT USAGE ON SCHEMA s TO {app};
-- CREATE elsewhere is not on a schema holding tenant tables.
CREATE SCHEMA scratch;
GRANT USAGE, CREATE ON SCHEMA scratch TO {app};
