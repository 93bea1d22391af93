CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint NOT NULL, paid boolean NOT NULL DEFAULT false, PRIMARY KEY (tenant_id, id));
CREATE TABLE public.pay (tenant_id bigint NOT NULL, id bigint NOT NULL, t_id bigint NOT NULL, PRIMARY KEY (tenant_id, id));
INSERT INTO public.t (tenant_id, id) VALUES (1, 1), (2, 2);
INSERT INTO public.pay VALUES (1, 1, 1), (2, 2, 2);
-- SECURITY INVOKER: the UPDATE runs under the writer's policies
CREATE FUNCTION public.mark_paid() RETURNS trigger LANGUAGE plpgsql SECURITY INVOKER SET search_path = public, pg_catalog
  AS $$ BEGIN UPDATE public.t SET paid = true WHERE id = NEW.t_id; RETURN NEW; END $$;
REVOKE EXECUTE ON FUNCTION public.mark_paid() FROM PUBLIC;
CREATE TRIGGER pay_mark AFTER INSERT OR UPDATE ON public.pay FOR EACH ROW EXECUTE FUNCTION public.mark_paid();
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t, public.pay TO {app};
-- protect: public.t public.pay
