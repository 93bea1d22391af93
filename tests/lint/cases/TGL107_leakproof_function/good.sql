CREATE FUNCTION app.eq(a text, b text) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT a = b';
