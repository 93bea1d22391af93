-- scope: public
-- Probed with --schema public: public.people_emails exposes private.people, outside the scan.
CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL);
INSERT INTO public.t (tenant_id, email) VALUES (1, 'a@one'), (2, 'c@two');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
CREATE SCHEMA private;
CREATE TABLE private.people (tenant_id bigint NOT NULL, id bigint PRIMARY KEY, email text);
INSERT INTO private.people VALUES (1, 1, 'x@one'), (2, 2, 'y@two');
CREATE VIEW public.people_emails AS SELECT tenant_id, email FROM private.people;
GRANT SELECT ON public.people_emails TO {app};
-- protect: public.t
