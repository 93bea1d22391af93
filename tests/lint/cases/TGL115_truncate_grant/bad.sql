CREATE TABLE app.t (tenant_id bigint NOT NULL, id bigint PRIMARY KEY);
GRANT ALL ON app.t TO app_user;
