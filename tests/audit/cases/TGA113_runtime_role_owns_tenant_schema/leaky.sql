CREATE SCHEMA s;
CREATE TABLE s.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON s.t TO {app};
-- protect: s.t
GRANT USAGE ON SCHEMA s TO {app};
-- The schema owner can DROP s.t, whoever owns the table.
ALTER SCHEMA s OWNER TO {app};
