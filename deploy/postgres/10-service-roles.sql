-- docker-compose's PostgreSQL, on its first start (an empty data volume): one role per service
-- that keeps its data here, with its development password (its name), owning its database and
-- nothing else, as `common::postgres::provision` makes them (which `cargo xtask up` and the
-- harness run). The services migrate their databases as these roles.
CREATE ROLE user_service LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'user_service';
CREATE DATABASE users OWNER user_service;
REVOKE ALL ON DATABASE users FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE users TO user_service;

CREATE ROLE inventory_service LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'inventory_service';
CREATE DATABASE inventory OWNER inventory_service;
REVOKE ALL ON DATABASE inventory FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE inventory TO inventory_service;
