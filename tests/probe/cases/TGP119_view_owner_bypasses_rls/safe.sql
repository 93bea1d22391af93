CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL);
INSERT INTO public.t (tenant_id, email) VALUES (1, 'a@one'), (1, 'b@one'), (2, 'c@two');
CREATE VIEW public.t_emails WITH (security_invoker = true) AS SELECT tenant_id, email FROM public.t;
CREATE TABLE public.u (tenant_id bigint NOT NULL, id bigint PRIMARY KEY, note text);
INSERT INTO public.u VALUES (1, 1, 'one'), (2, 2, 'two');
ALTER TABLE public.u OWNER TO {owner};
CREATE VIEW public.u_notes WITH (security_invoker = true) AS SELECT tenant_id, note FROM public.u;
ALTER VIEW public.u_notes OWNER TO {owner};
CREATE VIEW public.u_count WITH (security_invoker = true) AS SELECT count(*) AS n FROM public.u;
ALTER VIEW public.u_count OWNER TO {owner};
GRANT SELECT ON public.t_emails, public.u_notes, public.u_count, public.t, public.u TO {app};
-- protect: public.t public.u
