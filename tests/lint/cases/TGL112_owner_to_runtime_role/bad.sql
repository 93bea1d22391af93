ALTER TABLE app.t OWNER TO app_user;
