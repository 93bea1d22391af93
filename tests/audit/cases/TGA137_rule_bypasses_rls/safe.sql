CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint NOT NULL, paid boolean NOT NULL DEFAULT false, PRIMARY KEY (tenant_id, id));
CREATE TABLE public.pay (tenant_id bigint NOT NULL, id bigint NOT NULL, t_id bigint NOT NULL, PRIMARY KEY (tenant_id, id));
INSERT INTO public.t (tenant_id, id) VALUES (1, 1), (2, 2);
INSERT INTO public.pay VALUES (1, 1, 1), (2, 2, 2);
-- both tables owned by the NOLOGIN owner role, RLS forced: the rule's action is under RLS
ALTER TABLE public.t OWNER TO {owner};
ALTER TABLE public.pay OWNER TO {owner};
CREATE RULE pay_mark AS ON INSERT TO public.pay DO ALSO UPDATE public.t SET paid = true WHERE id = NEW.t_id;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t, public.pay TO {app};
-- protect: public.t public.pay
