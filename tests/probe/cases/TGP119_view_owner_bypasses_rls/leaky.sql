-- The runtime role reads two tenant tables only through views that run as their owners:
-- a superuser (for public.t) and the owner of public.u (whose RLS is not forced).
CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL);
INSERT INTO public.t (tenant_id, email) VALUES (1, 'a@one'), (1, 'b@one'), (2, 'c@two');
CREATE VIEW public.t_emails AS SELECT tenant_id, email FROM public.t;
CREATE TABLE public.u (tenant_id bigint NOT NULL, id bigint PRIMARY KEY, note text);
INSERT INTO public.u VALUES (1, 1, 'one'), (2, 2, 'two');
ALTER TABLE public.u OWNER TO {owner};
CREATE VIEW public.u_notes AS SELECT tenant_id, note FROM public.u;
ALTER VIEW public.u_notes OWNER TO {owner};
CREATE VIEW public.u_count AS SELECT count(*) AS n FROM public.u;
ALTER VIEW public.u_count OWNER TO {owner};
GRANT SELECT ON public.t_emails, public.u_notes, public.u_count TO {app};
ALTER TABLE public.u ENABLE ROW LEVEL SECURITY;  -- not forced: its owner skips the policy
CREATE POLICY tenant ON public.u USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::bigint);
-- protect: public.t
