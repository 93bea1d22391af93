GRANT SELECT ON app.t TO app_user;
