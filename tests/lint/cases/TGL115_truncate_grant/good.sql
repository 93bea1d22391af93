CREATE TABLE app.t (tenant_id bigint NOT NULL, id bigint PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.t TO app_user;
