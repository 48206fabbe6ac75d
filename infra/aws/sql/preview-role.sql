-- The database role of the pull-request previews, in the database staging and production use.
-- Preview code comes from pull requests, so the role can neither read another environment's
-- orders nor take the connections production needs:
--   * it owns only the schemas it creates, and may create only preview_pr_<n> ones (an event
--     trigger refuses any other name); it is granted nothing on any other schema, so the
--     tables of staging, production and other roles stay unreadable to it;
--   * CONNECTION LIMIT caps what every preview together can open.
-- Run once per database, and again to change the password or the limit, as the database's
-- owner or the RDS master user (rds_superuser may create event triggers):
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -v password="$PREVIEW_PASSWORD" \
--     -v connection_limit=20 -f infra/aws/sql/preview-role.sql

SELECT 'CREATE ROLE order_service_preview'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'order_service_preview') \gexec
-- NOINHERIT and no role memberships: nothing but its own grants.
ALTER ROLE order_service_preview LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS
  CONNECTION LIMIT :connection_limit PASSWORD :'password';

-- CONNECT, and CREATE for the `CREATE SCHEMA IF NOT EXISTS preview_pr_<n>` of `order-service
-- migrate`; the trigger below keeps that to preview schemas.
SELECT format('GRANT CONNECT, CREATE ON DATABASE %I TO order_service_preview', current_database()) \gexec

CREATE OR REPLACE FUNCTION public.order_service_preview_schemas_only() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  created record;
BEGIN
  IF current_user <> 'order_service_preview' AND session_user <> 'order_service_preview' THEN
    RETURN;
  END IF;
  FOR created IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    IF created.object_type = 'schema' AND created.object_identity !~ '^preview_pr_[0-9]+$' THEN
      RAISE EXCEPTION 'order_service_preview may create schemas named preview_pr_<n> only, not %',
        created.object_identity;
    END IF;
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION public.order_service_preview_schemas_only() FROM PUBLIC;

DROP EVENT TRIGGER IF EXISTS order_service_preview_schemas_only;
CREATE EVENT TRIGGER order_service_preview_schemas_only ON ddl_command_end
  WHEN TAG IN ('CREATE SCHEMA')
  EXECUTE FUNCTION public.order_service_preview_schemas_only();
