-- pam-twofa fleet store: tables, roles and the only door in (twofa_api functions).
--
-- Applied by `twofa-admin fleet init` as a role that may create roles and schemas
-- (a superuser, or the database owner with CREATEROLE). Idempotent: every run
-- brings an older schema up to this one and replaces the functions.
--
-- Roles (all NOLOGIN groups):
--   twofa_owner  owns schema twofa (the data) and schema twofa_api (the functions);
--                the functions run as it (SECURITY DEFINER).
--   twofa_host   one LOGIN role per host is a member (`fleet add-host`): EXECUTE on
--                the host functions only, USAGE on twofa_api only, no table privilege.
--   twofa_admin  EXECUTE on the admin functions (reset, unlock, import, status).
-- The data schema twofa is not usable by either group: a host's SELECT is 42501.
--
-- Every change to a user's row is one statement on that row (or runs holding its
-- lock): PostgreSQL makes concurrent writers wait and re-evaluates WHERE on the
-- newest version, so replay and lockout stay exact without SERIALIZABLE.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twofa_owner') THEN
        CREATE ROLE twofa_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twofa_host') THEN
        CREATE ROLE twofa_host NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twofa_admin') THEN
        CREATE ROLE twofa_admin NOLOGIN;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'twofa_owner', 'MEMBER') THEN
        EXECUTE format('GRANT twofa_owner TO %I', current_user);  -- for SET ROLE below
    END IF;
END $$;

CREATE SCHEMA IF NOT EXISTS twofa AUTHORIZATION twofa_owner;
CREATE SCHEMA IF NOT EXISTS twofa_api AUTHORIZATION twofa_owner;
REVOKE ALL ON SCHEMA twofa FROM PUBLIC;
REVOKE ALL ON SCHEMA twofa_api FROM PUBLIC;
GRANT USAGE ON SCHEMA twofa_api TO twofa_host, twofa_admin;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA twofa;
DO $$
BEGIN
    IF (SELECT extnamespace::regnamespace::text FROM pg_extension
        WHERE extname = 'pgcrypto') <> 'twofa' THEN
        RAISE EXCEPTION 'pgcrypto is installed in another schema of this database; '
            'use a database of its own for pam-twofa';
    END IF;
END $$;

SET ROLE twofa_owner;

CREATE TABLE IF NOT EXISTS twofa.schema_version (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL
);

-- One row: what a host must not choose for itself (`fleet init` copies the policy's).
CREATE TABLE IF NOT EXISTS twofa.settings (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    window_steps integer NOT NULL DEFAULT 1 CHECK (window_steps BETWEEN 0 AND 10),
    max_failures integer NOT NULL DEFAULT 5 CHECK (max_failures BETWEEN 1 AND 1000),
    interval_seconds integer NOT NULL DEFAULT 900 CHECK (interval_seconds >= 1),
    lock_seconds integer NOT NULL DEFAULT 300 CHECK (lock_seconds >= 1),
    max_lock_seconds integer NOT NULL DEFAULT 86400 CHECK (max_lock_seconds >= lock_seconds),
    max_consecutive_failures integer NOT NULL DEFAULT 100
        CHECK (max_consecutive_failures BETWEEN 1 AND 100),
    trust_days integer NOT NULL DEFAULT 30 CHECK (trust_days BETWEEN 1 AND 365),
    trust_max_per_user integer NOT NULL DEFAULT 10 CHECK (trust_max_per_user BETWEEN 1 AND 100),
    grant_seconds integer NOT NULL DEFAULT 300 CHECK (grant_seconds BETWEEN 10 AND 3600),
    pending_seconds integer NOT NULL DEFAULT 900 CHECK (pending_seconds BETWEEN 60 AND 86400),
    -- The key of the recovery-code MACs: never leaves the database.
    pepper bytea NOT NULL DEFAULT twofa.gen_random_bytes(32)
);
INSERT INTO twofa.settings (one) VALUES (true) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS twofa.hosts (
    name text PRIMARY KEY,
    added_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz
);

CREATE TABLE IF NOT EXISTS twofa.users (
    name text PRIMARY KEY CHECK (octet_length(name) BETWEEN 1 AND 228),
    enrolled boolean NOT NULL DEFAULT false,
    secret bytea,
    digits integer NOT NULL DEFAULT 6 CHECK (digits BETWEEN 6 AND 10),
    period integer NOT NULL DEFAULT 30 CHECK (period BETWEEN 1 AND 3600),
    algorithm text NOT NULL DEFAULT 'SHA1' CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    enrolled_at timestamptz,
    last_step bigint NOT NULL DEFAULT -1,
    failures integer NOT NULL DEFAULT 0,
    recent_failures timestamptz[] NOT NULL DEFAULT '{}',
    lock_level integer NOT NULL DEFAULT 0,
    locked_until timestamptz NOT NULL DEFAULT '-infinity',
    suspended boolean NOT NULL DEFAULT false,
    first_seen timestamptz,
    last_success timestamptz,
    email text,
    pending_secret bytea,
    pending_digits integer,
    pending_period integer,
    pending_algorithm text,
    pending_host text,
    pending_until timestamptz,
    CHECK (NOT enrolled OR secret IS NOT NULL)
);
-- Added after the first layout: older databases get them here (upgrade by re-running).
ALTER TABLE twofa.users ADD COLUMN IF NOT EXISTS suspended boolean NOT NULL DEFAULT false;
-- Emergency codes by mail: only a MAC (pepper) of the one live code; the mails sent.
ALTER TABLE twofa.users ADD COLUMN IF NOT EXISTS emergency_mac bytea;
ALTER TABLE twofa.users ADD COLUMN IF NOT EXISTS emergency_expires timestamptz;
ALTER TABLE twofa.users ADD COLUMN IF NOT EXISTS sends timestamptz[] NOT NULL DEFAULT '{}';
ALTER TABLE twofa.users ADD COLUMN IF NOT EXISTS email_changed_at timestamptz;
-- The host that asked for the live emergency code: the only one that may take it.
ALTER TABLE twofa.users ADD COLUMN IF NOT EXISTS emergency_host text;
ALTER TABLE twofa.settings ADD COLUMN IF NOT EXISTS emergency_digits integer NOT NULL
    DEFAULT 8 CHECK (emergency_digits BETWEEN 6 AND 12);
ALTER TABLE twofa.settings ADD COLUMN IF NOT EXISTS emergency_ttl_seconds integer NOT NULL
    DEFAULT 600 CHECK (emergency_ttl_seconds BETWEEN 60 AND 3600);
ALTER TABLE twofa.settings ADD COLUMN IF NOT EXISTS max_sends_per_hour integer NOT NULL
    DEFAULT 3 CHECK (max_sends_per_hour BETWEEN 1 AND 100);
ALTER TABLE twofa.settings ADD COLUMN IF NOT EXISTS after_email_change_hours integer NOT NULL
    DEFAULT 24 CHECK (after_email_change_hours BETWEEN 0 AND 720);

CREATE TABLE IF NOT EXISTS twofa.recovery_codes (
    user_name text NOT NULL REFERENCES twofa.users (name) ON DELETE CASCADE,
    mac bytea NOT NULL,
    PRIMARY KEY (user_name, mac)
);

CREATE TABLE IF NOT EXISTS twofa.devices (
    id text NOT NULL,
    user_name text NOT NULL REFERENCES twofa.users (name) ON DELETE CASCADE,
    host text NOT NULL,
    service text NOT NULL,
    ip text NOT NULL,
    key text,
    created timestamptz NOT NULL,
    expires timestamptz NOT NULL,
    last_used timestamptz NOT NULL,
    PRIMARY KEY (user_name, id)
);
CREATE INDEX IF NOT EXISTS devices_binding ON twofa.devices (user_name, host, ip);

-- One-time grants: issued only by a successful TOTP check, for that user on that host.
CREATE TABLE IF NOT EXISTS twofa.grants (
    token_hash bytea PRIMARY KEY,
    user_name text NOT NULL REFERENCES twofa.users (name) ON DELETE CASCADE,
    host text NOT NULL,
    expires timestamptz NOT NULL
);

-- Offline break-glass (store.postgresql.offline: recovery-codes): beside each MAC a
-- bcrypt hash a host can verify while the database is unreachable, made only while
-- settings.offline_days > 0; a host may fetch a user's hashes for offline_days after
-- that user's last successful code check on it (host_logins).
ALTER TABLE twofa.recovery_codes ADD COLUMN IF NOT EXISTS slow text;
ALTER TABLE twofa.settings ADD COLUMN IF NOT EXISTS offline_days integer NOT NULL
    DEFAULT 0 CHECK (offline_days BETWEEN 0 AND 365);
CREATE TABLE IF NOT EXISTS twofa.host_logins (
    user_name text NOT NULL REFERENCES twofa.users (name) ON DELETE CASCADE,
    host text NOT NULL,
    last_login timestamptz NOT NULL,
    PRIMARY KEY (user_name, host)
);

REVOKE ALL ON ALL TABLES IN SCHEMA twofa FROM PUBLIC;

-- ---------------------------------------------------------------- internal helpers

CREATE OR REPLACE FUNCTION twofa.hotp(key bytea, counter bigint, digits integer,
                                      algorithm text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = twofa, pg_temp AS $$
DECLARE
    mac bytea := twofa.hmac(int8send(counter), key, lower(algorithm));
    off integer := get_byte(mac, length(mac) - 1) & 15;
    bin bigint;
BEGIN
    bin := ((get_byte(mac, off) & 127)::bigint << 24) | (get_byte(mac, off + 1) << 16)
         | (get_byte(mac, off + 2) << 8) | get_byte(mac, off + 3);
    RETURN lpad((bin % (10::numeric ^ digits)::bigint)::text, digits, '0');
END $$;

-- The step within the window whose code is ``code`` (every step computed), or NULL.
CREATE OR REPLACE FUNCTION twofa.match_step(key bytea, code text, t timestamptz,
                                            digits integer, period integer,
                                            algorithm text, window_steps integer)
RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = twofa, pg_temp AS $$
DECLARE
    center bigint := floor(extract(epoch FROM t) / period)::bigint;
    found bigint;
    step bigint;
BEGIN
    IF key IS NULL OR code IS NULL OR length(code) <> digits OR code !~ '^[0-9]+$' THEN
        RETURN NULL;
    END IF;
    FOR step IN center - window_steps .. center + window_steps LOOP
        IF step >= 0 AND twofa.hotp(key, step, digits, algorithm) = code AND found IS NULL THEN
            found := step;
        END IF;
    END LOOP;
    RETURN found;
END $$;

-- Failures still inside the interval, with ``t`` added, the newest ``keep`` of them.
CREATE OR REPLACE FUNCTION twofa.recent(arr timestamptz[], t timestamptz,
                                        interval_seconds integer, keep integer)
RETURNS timestamptz[]
LANGUAGE sql IMMUTABLE SET search_path = twofa, pg_temp AS $$
    SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM (
        SELECT x FROM unnest(arr || t) AS x
        WHERE t - x < make_interval(secs => interval_seconds)
        ORDER BY x DESC LIMIT keep) AS kept
$$;

CREATE OR REPLACE FUNCTION twofa.epoch(t timestamptz) RETURNS double precision
LANGUAGE sql IMMUTABLE SET search_path = twofa, pg_temp AS $$
    SELECT CASE WHEN t IS NULL OR t = '-infinity' THEN 0
                WHEN t = 'infinity' THEN 'Infinity'::double precision
                ELSE extract(epoch FROM t)::double precision END
$$;

-- Why ``name`` cannot answer now (locked, suspended, not enrolled), or NULL.
CREATE OR REPLACE FUNCTION twofa.refusal(u twofa.users, t timestamptz) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = twofa, pg_temp AS $$
    SELECT CASE
        WHEN u.name IS NULL OR NOT u.enrolled THEN jsonb_build_object('result', 'not-enrolled')
        WHEN u.suspended THEN jsonb_build_object('result', 'suspended', 'failures', u.failures)
        WHEN u.locked_until > t THEN jsonb_build_object(
            'result', 'locked', 'locked_until', twofa.epoch(u.locked_until))
    END
$$;

CREATE OR REPLACE FUNCTION twofa.new_grant(p_user text, t timestamptz) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = twofa, pg_temp AS $$
DECLARE
    token text := encode(twofa.gen_random_bytes(24), 'hex');
BEGIN
    DELETE FROM twofa.grants WHERE expires <= t;
    INSERT INTO twofa.grants (token_hash, user_name, host, expires)
    SELECT sha256(convert_to(token, 'UTF8')), p_user, session_user,
           t + make_interval(secs => s.grant_seconds)
    FROM twofa.settings AS s;
    RETURN token;
END $$;

-- Consume a grant of ``p_user`` issued on this host: true once, then never again.
CREATE OR REPLACE FUNCTION twofa.use_grant(p_user text, p_grant text, t timestamptz)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = twofa, pg_temp AS $$
BEGIN
    IF p_grant IS NULL OR length(p_grant) <> 48 THEN
        RETURN false;
    END IF;
    DELETE FROM twofa.grants
    WHERE token_hash = sha256(convert_to(p_grant, 'UTF8')) AND user_name = p_user
      AND host = session_user AND expires > t;
    RETURN FOUND;
END $$;

-- One wrong answer, in one statement: counted, progressive lock, suspension at
-- max_consecutive_failures. Not counted while locked, suspended or not enrolled.
CREATE OR REPLACE FUNCTION twofa.count_failure(p_user text, t timestamptz, s twofa.settings,
                                               reason text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = twofa, pg_temp AS $$
DECLARE
    u twofa.users;
BEGIN
    UPDATE twofa.users AS x SET
        failures = x.failures + 1,
        suspended = x.failures + 1 >= s.max_consecutive_failures,
        lock_level = x.lock_level + CASE WHEN x.lock_level > 0 OR cardinality(twofa.recent(
            x.recent_failures, t, s.interval_seconds, s.max_failures)) >= s.max_failures
            THEN 1 ELSE 0 END,
        locked_until = CASE WHEN x.lock_level > 0 OR cardinality(twofa.recent(
            x.recent_failures, t, s.interval_seconds, s.max_failures)) >= s.max_failures
            THEN t + make_interval(secs => least(
                s.lock_seconds * 2::numeric ^ least(x.lock_level, 62), s.max_lock_seconds))
            ELSE x.locked_until END,
        recent_failures = CASE WHEN x.lock_level > 0 OR cardinality(twofa.recent(
            x.recent_failures, t, s.interval_seconds, s.max_failures)) >= s.max_failures
            THEN '{}' ELSE twofa.recent(x.recent_failures, t, s.interval_seconds,
                                         s.max_failures) END
    WHERE x.name = p_user AND x.enrolled AND NOT x.suspended AND x.locked_until <= t
    RETURNING x.* INTO u;
    IF NOT FOUND THEN  -- locked, suspended or reset meanwhile: not counted
        SELECT * INTO u FROM twofa.users WHERE name = p_user;
        RETURN coalesce(twofa.refusal(u, t), jsonb_build_object('result', reason));
    END IF;
    RETURN jsonb_build_object(
        'result', reason, 'failures', u.failures, 'suspended', u.suspended,
        'locked_until', CASE WHEN u.locked_until > t THEN twofa.epoch(u.locked_until) END,
        'email', u.email IS NOT NULL,
        -- the address only when this failure locks or suspends: the host mails the owner
        'email_address', CASE WHEN u.locked_until > t OR u.suspended THEN u.email END);
END $$;

-- Offline break-glass helpers. A recovery code's host-verifiable hash: bcrypt, cost 10
-- (~50 ms a guess on one core), only while break-glass is on (offline_days > 0).
CREATE OR REPLACE FUNCTION twofa.slow_hash(code text) RETURNS text
LANGUAGE sql VOLATILE SET search_path = twofa, pg_temp AS $$
    SELECT CASE WHEN s.offline_days > 0 THEN twofa.crypt(code, twofa.gen_salt('bf', 10)) END
    FROM twofa.settings AS s
$$;

-- A successful code check of ``p_user`` on this host (offline_codes may follow).
CREATE OR REPLACE FUNCTION twofa.note_login(p_user text, t timestamptz) RETURNS void
LANGUAGE sql VOLATILE SET search_path = twofa, pg_temp AS $$
    INSERT INTO twofa.host_logins AS h (user_name, host, last_login)
    VALUES (p_user, session_user, t)
    ON CONFLICT (user_name, host) DO UPDATE SET last_login = excluded.last_login
$$;

-- ---------------------------------------------------------------- host functions

-- One login's answer: a TOTP code (replay = compare-and-set on last_step), else a
-- recovery code (consumed once), else a failure (counted, progressive lock, suspension).
-- Not counted: an empty answer, a replay, any answer while locked or suspended.
CREATE OR REPLACE FUNCTION twofa_api.check_code(p_user text, p_answer text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    s twofa.settings;
    u twofa.users;
    refused jsonb;
    code text := replace(btrim(coalesce(p_answer, '')), ' ', '');
    rcode text := replace(code, '-', '');
    step bigint;
    left_codes integer;
BEGIN
    SELECT * INTO s FROM twofa.settings;
    SELECT * INTO u FROM twofa.users WHERE name = p_user;
    refused := twofa.refusal(u, t);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    IF code = '' THEN
        RETURN jsonb_build_object('result', 'no-answer');
    END IF;
    step := twofa.match_step(u.secret, code, t, u.digits, u.period, u.algorithm,
                             s.window_steps);
    IF step IS NOT NULL THEN
        UPDATE twofa.users SET last_step = step, failures = 0, recent_failures = '{}',
               lock_level = 0, locked_until = '-infinity', last_success = t
        WHERE name = p_user AND enrolled AND NOT suspended AND last_step < step
          AND locked_until <= t AND secret = u.secret;  -- not re-keyed meanwhile
        IF FOUND THEN
            PERFORM twofa.note_login(p_user, t);
            RETURN jsonb_build_object('result', 'ok', 'step', step,
                                      'grant', twofa.new_grant(p_user, t));
        END IF;
        SELECT * INTO u FROM twofa.users WHERE name = p_user;
        RETURN coalesce(twofa.refusal(u, t), jsonb_build_object('result', 'replay'));
    END IF;
    IF rcode ~ '^[0-9]{8,10}$' THEN  -- a recovery code? (under the user's row lock)
        SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
        refused := twofa.refusal(u, t);
        IF refused IS NOT NULL THEN
            RETURN refused;
        END IF;
        DELETE FROM twofa.recovery_codes
        WHERE user_name = p_user AND mac = twofa.hmac(convert_to(rcode, 'UTF8'), s.pepper, 'sha256');
        IF FOUND THEN
            UPDATE twofa.users SET failures = 0, recent_failures = '{}', lock_level = 0,
                   locked_until = '-infinity', last_success = t
            WHERE name = p_user;
            SELECT count(*) INTO left_codes FROM twofa.recovery_codes WHERE user_name = p_user;
            PERFORM twofa.note_login(p_user, t);
            RETURN jsonb_build_object('result', 'recovery-code', 'left', left_codes);
        END IF;
    END IF;
    RETURN twofa.count_failure(p_user, t, s, 'bad-code');
END $$;

-- A trusted device skips the code: bound to this host, the PAM service, the client IP
-- and the SSH key (or none); never while the user is locked or suspended.
CREATE OR REPLACE FUNCTION twofa_api.skip_device(p_user text, p_service text, p_ip text,
                                                 p_key text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    found_id text;
    found_expires timestamptz;
BEGIN
    UPDATE twofa.devices AS d SET last_used = t
    FROM twofa.users AS u
    WHERE d.user_name = p_user AND d.host = session_user AND d.service = p_service
      AND d.ip = p_ip AND d.key IS NOT DISTINCT FROM p_key AND d.expires > t
      AND u.name = d.user_name AND u.enrolled AND NOT u.suspended AND u.locked_until <= t
    RETURNING d.id, d.expires INTO found_id, found_expires;
    RETURN jsonb_build_object('trusted', found_id IS NOT NULL, 'id', found_id,
                              'expires', CASE WHEN found_id IS NOT NULL
                                              THEN twofa.epoch(found_expires) END);
END $$;

-- Trust a device: only with a grant a successful code check on this host issued.
CREATE OR REPLACE FUNCTION twofa_api.add_device(p_user text, p_grant text, p_service text,
                                                p_ip text, p_key text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    s twofa.settings;
    u twofa.users;
    refused jsonb;
    new_id text := encode(twofa.gen_random_bytes(4), 'hex');
BEGIN
    SELECT * INTO s FROM twofa.settings;
    SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
    refused := twofa.refusal(u, t);  -- never while locked (the grant stays unused)
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    IF p_ip IS NULL OR p_ip = '' OR p_service IS NULL OR p_service = ''
       OR NOT twofa.use_grant(p_user, p_grant, t) THEN
        RETURN jsonb_build_object('result', 'no-grant');
    END IF;
    DELETE FROM twofa.devices WHERE user_name = p_user AND host = session_user
        AND service = p_service AND ip = p_ip AND key IS NOT DISTINCT FROM p_key;
    INSERT INTO twofa.devices (id, user_name, host, service, ip, key, created, expires,
                               last_used)
    VALUES (new_id, p_user, session_user, p_service, p_ip, p_key, t,
            t + make_interval(days => s.trust_days), t);
    DELETE FROM twofa.devices WHERE user_name = p_user AND id IN (
        SELECT id FROM twofa.devices WHERE user_name = p_user
        ORDER BY created DESC OFFSET s.trust_max_per_user);
    -- the address: the host tells the owner a device was trusted (it had the grant)
    RETURN jsonb_build_object('result', 'ok', 'id', new_id, 'email', u.email,
                              'created', twofa.epoch(t),
                              'expires', twofa.epoch(t + make_interval(days => s.trust_days)));
END $$;

-- When the user was first seen (starts the enrollment grace period), recorded once.
CREATE OR REPLACE FUNCTION twofa_api.first_seen(p_user text) RETURNS double precision
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    INSERT INTO twofa.users AS u (name, first_seen) VALUES (p_user, clock_timestamp())
    ON CONFLICT (name) DO UPDATE SET first_seen = coalesce(u.first_seen, excluded.first_seen)
    RETURNING twofa.epoch(first_seen)
$$;

-- What a login or `twofa-enroll status` needs to know, never a secret.
CREATE OR REPLACE FUNCTION twofa_api.status(p_user text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    SELECT jsonb_build_object(
        'enrolled', coalesce(bool_or(u.enrolled), false),
        'digits', coalesce(max(u.digits), 6),  -- the code length (single-prompt mode)
        'email', coalesce(bool_or(u.email IS NOT NULL), false),  -- never the address
        'email_changed_at', CASE WHEN max(u.email_changed_at) IS NOT NULL
                                 THEN twofa.epoch(max(u.email_changed_at)) END,
        'failures', coalesce(max(u.failures), 0),
        'suspended', coalesce(bool_or(u.suspended), false),
        'locked_until', CASE WHEN max(u.locked_until) > clock_timestamp()
                             THEN twofa.epoch(max(u.locked_until)) END,
        'first_seen', CASE WHEN max(u.first_seen) IS NOT NULL
                           THEN twofa.epoch(max(u.first_seen)) END,
        'recovery_codes', (SELECT count(*) FROM twofa.recovery_codes WHERE user_name = p_user),
        'devices', (SELECT count(*) FROM twofa.devices
                    WHERE user_name = p_user AND host = session_user
                      AND expires > clock_timestamp()))
    FROM twofa.users AS u WHERE u.name = p_user
$$;

-- Who is enrolled, for the daemon's offline list (names only).
CREATE OR REPLACE FUNCTION twofa_api.enrolled_users() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    SELECT name FROM twofa.users WHERE enrolled ORDER BY name
$$;

-- Start an enrollment on this host: the new secret goes to this host only. Replacing
-- an enrolled user's secret needs a grant (the user proved the current one here).
CREATE OR REPLACE FUNCTION twofa_api.enroll_begin(p_user text, p_grant text, p_digits integer,
                                                  p_period integer, p_algorithm text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    s twofa.settings;
    u twofa.users;
    fresh bytea := twofa.gen_random_bytes(20);
BEGIN
    SELECT * INTO s FROM twofa.settings;
    IF p_digits NOT BETWEEN 6 AND 10 OR p_period NOT BETWEEN 1 AND 3600
       OR p_algorithm NOT IN ('SHA1', 'SHA256', 'SHA512') THEN
        RETURN jsonb_build_object('result', 'bad-parameters');
    END IF;
    INSERT INTO twofa.users (name) VALUES (p_user) ON CONFLICT DO NOTHING;
    SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
    IF u.enrolled AND NOT twofa.use_grant(p_user, p_grant, t) THEN
        RETURN jsonb_build_object('result', 'no-grant');
    END IF;
    UPDATE twofa.users SET pending_secret = fresh, pending_digits = p_digits,
           pending_period = p_period, pending_algorithm = p_algorithm,
           pending_host = session_user, pending_until = t + make_interval(secs => s.pending_seconds)
    WHERE name = p_user;
    RETURN jsonb_build_object('result', 'ok', 'secret', encode(fresh, 'hex'),
                              'expires', twofa.epoch(t + make_interval(secs => s.pending_seconds)));
END $$;

-- Finish it with a code from the new secret, on the host that began it.
CREATE OR REPLACE FUNCTION twofa_api.enroll_confirm(p_user text, p_code text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    s twofa.settings;
    u twofa.users;
    step bigint;
BEGIN
    SELECT * INTO s FROM twofa.settings;
    SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
    IF u.name IS NULL OR u.pending_secret IS NULL OR u.pending_host <> session_user
       OR u.pending_until <= t THEN
        RETURN jsonb_build_object('result', 'no-pending');
    END IF;
    step := twofa.match_step(u.pending_secret, replace(btrim(coalesce(p_code, '')), ' ', ''),
                             t, u.pending_digits, u.pending_period, u.pending_algorithm,
                             s.window_steps);
    IF step IS NULL THEN
        RETURN jsonb_build_object('result', 'bad-code');
    END IF;
    UPDATE twofa.users SET enrolled = true, secret = pending_secret, digits = pending_digits,
           period = pending_period, algorithm = pending_algorithm, enrolled_at = t,
           last_step = step, failures = 0, recent_failures = '{}', lock_level = 0,
           locked_until = '-infinity', suspended = false, pending_secret = NULL,
           pending_digits = NULL, pending_period = NULL, pending_algorithm = NULL,
           pending_host = NULL, pending_until = NULL
    WHERE name = p_user;
    DELETE FROM twofa.devices WHERE user_name = p_user;  -- the old secret vouched for them
    DELETE FROM twofa.grants WHERE user_name = p_user;
    RETURN jsonb_build_object('result', 'ok');
END $$;

-- Ten new recovery codes (old ones void), shown once to the user through this host.
CREATE OR REPLACE FUNCTION twofa_api.new_recovery_codes(p_user text, p_grant text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    s twofa.settings;
    codes text[];
BEGIN
    SELECT * INTO s FROM twofa.settings;
    IF NOT twofa.use_grant(p_user, p_grant, t) THEN
        RETURN jsonb_build_object('result', 'no-grant');
    END IF;
    SELECT array_agg(lpad(((('x' || encode(twofa.gen_random_bytes(8), 'hex'))::bit(64)::bigint
                            & 9223372036854775807) % 10000000000)::text, 10, '0'))
    INTO codes FROM generate_series(1, 10);
    DELETE FROM twofa.recovery_codes WHERE user_name = p_user;
    INSERT INTO twofa.recovery_codes (user_name, mac, slow)
    SELECT p_user, twofa.hmac(convert_to(c, 'UTF8'), s.pepper, 'sha256'), twofa.slow_hash(c)
    FROM unnest(codes) AS c ON CONFLICT DO NOTHING;
    RETURN jsonb_build_object('result', 'ok', 'codes', to_jsonb(codes));
END $$;

-- This host's trusted devices of a user (``twofa-enroll devices``), and revoking one.
CREATE OR REPLACE FUNCTION twofa_api.devices(p_user text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'id', id, 'service', service, 'ip', ip, 'key', key, 'created', twofa.epoch(created),
        'expires', twofa.epoch(expires), 'last_used', twofa.epoch(last_used),
        'expired', expires <= clock_timestamp()) ORDER BY created), '[]')
    FROM twofa.devices WHERE user_name = p_user AND host = session_user
$$;

CREATE OR REPLACE FUNCTION twofa_api.revoke_device(p_user text, p_id text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM twofa.devices WHERE user_name = p_user AND host = session_user
        AND (p_id IS NULL OR id = p_id);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- The user asked for an emergency code by mail: a fresh code (voiding the last one),
-- its MAC kept, the send counted against the hourly budget. The code and address go
-- to this host, which mails it; only this host may take it (a compromised host gets
-- codes that work on itself alone).
CREATE OR REPLACE FUNCTION twofa_api.emergency_begin(p_user text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    s twofa.settings;
    u twofa.users;
    refused jsonb;
    recent timestamptz[];
    code text;
BEGIN
    SELECT * INTO s FROM twofa.settings;
    SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
    refused := twofa.refusal(u, t);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    IF u.email IS NULL THEN
        RETURN jsonb_build_object('result', 'no-email');
    END IF;
    IF u.email_changed_at IS NOT NULL
       AND t < u.email_changed_at + make_interval(hours => s.after_email_change_hours) THEN
        RETURN jsonb_build_object('result', 'email-changed', 'until', twofa.epoch(
            u.email_changed_at + make_interval(hours => s.after_email_change_hours)));
    END IF;
    SELECT coalesce(array_agg(x ORDER BY x), '{}') INTO recent FROM unnest(u.sends) AS x
    WHERE t - x < interval '1 hour' AND x <= t + interval '1 minute';
    IF cardinality(recent) >= s.max_sends_per_hour THEN
        UPDATE twofa.users SET sends = recent WHERE name = p_user;
        RETURN jsonb_build_object('result', 'send-limit');
    END IF;
    code := lpad(((('x' || encode(twofa.gen_random_bytes(8), 'hex'))::bit(64)::bigint
                   & 9223372036854775807) % (10::numeric ^ s.emergency_digits)::bigint)::text,
                 s.emergency_digits, '0');
    UPDATE twofa.users SET sends = recent || t,
           emergency_mac = twofa.hmac(convert_to(p_user || ':' || code, 'UTF8'), s.pepper,
                                      'sha256'),
           emergency_expires = t + make_interval(secs => s.emergency_ttl_seconds),
           emergency_host = session_user
    WHERE name = p_user;
    RETURN jsonb_build_object('result', 'ok', 'code', code, 'email', u.email,
                              'expires', twofa.epoch(t + make_interval(
                                  secs => s.emergency_ttl_seconds)),
                              'ttl_seconds', s.emergency_ttl_seconds);
END $$;

-- The emergency code typed: accepted once before it expires, on the host that asked
-- for it; a wrong one is counted (an empty answer is not).
CREATE OR REPLACE FUNCTION twofa_api.emergency_check(p_user text, p_answer text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    s twofa.settings;
    u twofa.users;
    refused jsonb;
    code text := translate(coalesce(p_answer, ''), ' -' || chr(9), '');
BEGIN
    SELECT * INTO s FROM twofa.settings;
    SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
    refused := twofa.refusal(u, t);
    IF refused IS NOT NULL THEN
        RETURN refused;
    END IF;
    IF btrim(coalesce(p_answer, ''), ' ' || chr(9)) = '' THEN
        RETURN jsonb_build_object('result', 'no-answer');
    END IF;
    IF u.emergency_mac IS NOT NULL AND t < u.emergency_expires AND code ~ '^[0-9]+$'
       AND u.emergency_host = session_user
       AND u.emergency_mac = twofa.hmac(convert_to(p_user || ':' || code, 'UTF8'), s.pepper,
                                        'sha256') THEN
        UPDATE twofa.users SET emergency_mac = NULL, emergency_expires = NULL, failures = 0,
               recent_failures = '{}', lock_level = 0, locked_until = '-infinity',
               last_success = t
        WHERE name = p_user;
        RETURN jsonb_build_object('result', 'emergency-code', 'email', u.email);
    END IF;
    IF u.emergency_mac IS NOT NULL AND t >= u.emergency_expires THEN
        UPDATE twofa.users SET emergency_mac = NULL, emergency_expires = NULL
        WHERE name = p_user;  -- expired: no use keeping it
    END IF;
    RETURN twofa.count_failure(p_user, t, s, 'bad-emergency-code');
END $$;

-- The bcrypt hashes of a user's unused recovery codes, for this host's offline cache:
-- only while break-glass is on, only for a user enrolled, not suspended, who passed a
-- code check on this host within offline_days; with the user's lock, which the host
-- keeps honouring offline. A used code is reported by its hash.
CREATE OR REPLACE FUNCTION twofa_api.offline_codes(p_user text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    s twofa.settings;
BEGIN
    SELECT * INTO s FROM twofa.settings;
    IF s.offline_days = 0 OR NOT EXISTS (
            SELECT 1 FROM twofa.host_logins AS h JOIN twofa.users AS u ON u.name = h.user_name
            WHERE h.user_name = p_user AND h.host = session_user AND u.enrolled
              AND NOT u.suspended
              AND h.last_login > t - make_interval(days => s.offline_days)) THEN
        RETURN jsonb_build_object('result', 'not-allowed');
    END IF;
    RETURN jsonb_build_object('result', 'ok', 'codes', (
        SELECT coalesce(jsonb_agg(slow ORDER BY slow), '[]') FROM twofa.recovery_codes
        WHERE user_name = p_user AND slow IS NOT NULL), 'locked_until', (
        SELECT CASE WHEN locked_until > t THEN twofa.epoch(locked_until) END
        FROM twofa.users WHERE name = p_user));
END $$;

-- What this host did while the database was unreachable, reported before anything
-- else when it answers again: the recovery codes used (by their bcrypt hash; deleted
-- fleet-wide) and the wrong answers (counted like check_code's). Only for a user who
-- logged in on this host before (the only users it can have cached).
CREATE OR REPLACE FUNCTION twofa_api.offline_report(p_user text, p_used text[],
                                                    p_failures integer) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    s twofa.settings;
    used integer;
BEGIN
    SELECT * INTO s FROM twofa.settings;
    PERFORM 1 FROM twofa.users WHERE name = p_user FOR UPDATE;
    IF NOT EXISTS (SELECT 1 FROM twofa.host_logins
                   WHERE user_name = p_user AND host = session_user) THEN
        RETURN jsonb_build_object('result', 'not-allowed');
    END IF;
    DELETE FROM twofa.recovery_codes
    WHERE user_name = p_user AND slow = ANY (coalesce(p_used, '{}'));
    GET DIAGNOSTICS used = ROW_COUNT;
    FOR i IN 1 .. least(greatest(coalesce(p_failures, 0), 0), s.max_failures) LOOP
        PERFORM twofa.count_failure(p_user, t, s, 'bad-code');
    END LOOP;
    RETURN (SELECT jsonb_build_object('result', 'ok', 'used', used, 'suspended', suspended,
                                      'locked_until', CASE WHEN locked_until > t
                                                           THEN twofa.epoch(locked_until) END)
            FROM twofa.users WHERE name = p_user);
END $$;

-- ---------------------------------------------------------------- admin functions

-- Bring one user in from a file store: 'added', 'same' (that secret already), or
-- 'conflict' (another secret; replaced only with p_force -> 'replaced').
CREATE OR REPLACE FUNCTION twofa_api.admin_import(p_user text, p_secret bytea, p_digits integer,
                                                  p_period integer, p_algorithm text,
                                                  p_last_step bigint, p_email text,
                                                  p_force boolean) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    u twofa.users;
    outcome text := 'added';
BEGIN
    INSERT INTO twofa.users (name) VALUES (p_user) ON CONFLICT DO NOTHING;
    SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
    IF u.enrolled THEN
        IF u.secret = p_secret AND u.digits = p_digits AND u.period = p_period
           AND u.algorithm = p_algorithm THEN
            UPDATE twofa.users SET last_step = greatest(last_step, p_last_step),
                   email = coalesce(email, p_email)
            WHERE name = p_user;
            RETURN 'same';
        END IF;
        IF NOT p_force THEN
            RETURN 'conflict';
        END IF;
        outcome := 'replaced';
        DELETE FROM twofa.devices WHERE user_name = p_user;
        DELETE FROM twofa.grants WHERE user_name = p_user;
        DELETE FROM twofa.recovery_codes WHERE user_name = p_user;
    END IF;
    UPDATE twofa.users SET enrolled = true, secret = p_secret, digits = p_digits,
           period = p_period, algorithm = p_algorithm, enrolled_at = clock_timestamp(),
           last_step = p_last_step, failures = 0, recent_failures = '{}', lock_level = 0,
           locked_until = '-infinity', suspended = false, email = coalesce(p_email, email)
    WHERE name = p_user;
    RETURN outcome;
END $$;

CREATE OR REPLACE FUNCTION twofa_api.admin_set_recovery_codes(p_user text, p_codes text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM twofa.recovery_codes WHERE user_name = p_user;
    INSERT INTO twofa.recovery_codes (user_name, mac, slow)
    SELECT p_user, twofa.hmac(convert_to(c, 'UTF8'), s.pepper, 'sha256'), twofa.slow_hash(c)
    FROM unnest(p_codes) AS c, twofa.settings AS s ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION twofa_api.admin_reset(p_user text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
BEGIN
    DELETE FROM twofa.users WHERE name = p_user;
    RETURN FOUND;
END $$;

CREATE OR REPLACE FUNCTION twofa_api.admin_unlock(p_user text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
BEGIN
    UPDATE twofa.users SET failures = 0, recent_failures = '{}', lock_level = 0,
           locked_until = '-infinity', suspended = false
    WHERE name = p_user;
    RETURN FOUND;
END $$;

-- The admin vouches for the address (NULL: none): no hold; a code mailed to the old
-- address stops working. A user without a row gets one only when an address is set.
CREATE OR REPLACE FUNCTION twofa_api.admin_set_email(p_user text, p_email text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
BEGIN
    IF p_email IS NOT NULL THEN
        INSERT INTO twofa.users (name) VALUES (p_user) ON CONFLICT DO NOTHING;
    END IF;
    UPDATE twofa.users AS u SET email = p_email, email_changed_at = NULL,
           email_pending = NULL, email_pending_host = NULL, email_pending_until = NULL,
           email_pending_proven = NULL,
           emergency_mac = CASE WHEN u.email IS DISTINCT FROM p_email THEN NULL
                                ELSE u.emergency_mac END,
           emergency_expires = CASE WHEN u.email IS DISTINCT FROM p_email THEN NULL
                                    ELSE u.emergency_expires END
    WHERE name = p_user;
    RETURN FOUND;
END $$;

-- Every host's devices of a user (twofa-admin trust list), and revoking them.
CREATE OR REPLACE FUNCTION twofa_api.admin_devices(p_user text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'id', id, 'host', host, 'service', service, 'ip', ip, 'key', key,
        'created', twofa.epoch(created), 'expires', twofa.epoch(expires),
        'last_used', twofa.epoch(last_used), 'expired', expires <= clock_timestamp())
        ORDER BY created), '[]')
    FROM twofa.devices WHERE user_name = p_user
$$;

CREATE OR REPLACE FUNCTION twofa_api.admin_revoke_devices(p_user text, p_id text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM twofa.devices WHERE user_name = p_user AND (p_id IS NULL OR id = p_id);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION twofa_api.admin_status() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    SELECT jsonb_build_object(
        'version', (SELECT version FROM twofa.schema_version),
        'hosts', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'name', name, 'added_at', twofa.epoch(added_at),
                      'last_seen', twofa.epoch(last_seen)) ORDER BY name), '[]')
                  FROM twofa.hosts),
        'users', (SELECT count(*) FROM twofa.users),
        'enrolled', (SELECT count(*) FROM twofa.users WHERE enrolled),
        'locked', (SELECT count(*) FROM twofa.users
                   WHERE locked_until > clock_timestamp() OR suspended))
$$;

-- The daemon's list of enrolled names (its offline answers): all of them with
-- p_since NULL, else those enrolled at or after p_since (an epoch of the database's
-- clock), with the database's now for the next call. The daemon asks at each health
-- check (5 s), so a user enrolled on another host is known here within seconds, not
-- only at the full refresh (60 s).
CREATE INDEX IF NOT EXISTS users_enrolled_at ON twofa.users (enrolled_at);
CREATE OR REPLACE FUNCTION twofa_api.enrolled_since(p_since double precision) RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    SELECT jsonb_build_object(
        'now', twofa.epoch(clock_timestamp()),
        'names', coalesce((SELECT jsonb_agg(name) FROM twofa.users
                           WHERE enrolled AND (p_since IS NULL
                                               OR enrolled_at >= to_timestamp(p_since))),
                          '[]'::jsonb))
$$;

-- A host says it is alive (the daemon at each connect): `fleet status` shows it.
CREATE OR REPLACE FUNCTION twofa_api.hello() RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    UPDATE twofa.hosts SET last_seen = clock_timestamp() WHERE name = session_user;
    SELECT version FROM twofa.schema_version
$$;

-- ---------------------------------------------------------------- the enrollment service
-- (`twofa-enroll` on a fleet host: pam_twofa/fleet/hoststore.py)

-- An address waiting for verification: named on one host (whose service keeps the
-- mailed code, hashed), set only from that host, before it expires. ``proven``: the
-- user was enrolled and proved the second factor when naming it.
ALTER TABLE twofa.users ADD COLUMN IF NOT EXISTS email_pending text;
ALTER TABLE twofa.users ADD COLUMN IF NOT EXISTS email_pending_host text;
ALTER TABLE twofa.users ADD COLUMN IF NOT EXISTS email_pending_until timestamptz;
ALTER TABLE twofa.users ADD COLUMN IF NOT EXISTS email_pending_proven boolean;

-- A proof of the second factor for a change (re-enroll, recovery codes, disable,
-- email): check_code, and a one-time grant for a recovery code too.
CREATE OR REPLACE FUNCTION twofa_api.prove(p_user text, p_answer text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    got jsonb := twofa_api.check_code(p_user, p_answer);
BEGIN
    IF got->>'result' = 'recovery-code' THEN
        got := got || jsonb_build_object('grant', twofa.new_grant(p_user, clock_timestamp()));
    END IF;
    RETURN got;
END $$;

-- What `twofa-enroll status` shows: never a secret; the addresses masked as
-- mailer.mask does (a host may show them to their owner, not harvest them).
CREATE OR REPLACE FUNCTION twofa.mask(address text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = twofa, pg_temp AS $$
    SELECT CASE WHEN address IS NOT NULL THEN
        left(substring(address FROM '^(.*)@[^@]*$'), 1) || '***@'
        || substring(address FROM '@([^@]*)$') END
$$;

CREATE OR REPLACE FUNCTION twofa_api.account(p_user text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    SELECT jsonb_build_object(
        'enrolled', coalesce(bool_or(u.enrolled), false),
        'enrolled_at', CASE WHEN bool_or(u.enrolled) THEN twofa.epoch(max(u.enrolled_at)) END,
        'failures', coalesce(max(u.failures), 0),
        'lock_level', coalesce(max(u.lock_level), 0),
        'locked_until', CASE WHEN max(u.locked_until) > clock_timestamp()
                             THEN twofa.epoch(max(u.locked_until)) END,
        'suspended', coalesce(bool_or(u.suspended), false),
        'last_success', CASE WHEN max(u.last_success) IS NOT NULL
                             THEN twofa.epoch(max(u.last_success)) END,
        'first_seen', CASE WHEN max(u.first_seen) IS NOT NULL
                           THEN twofa.epoch(max(u.first_seen)) END,
        'recovery_codes', (SELECT count(*) FROM twofa.recovery_codes WHERE user_name = p_user),
        'devices', (SELECT count(*) FROM twofa.devices
                    WHERE user_name = p_user AND host = session_user
                      AND expires > clock_timestamp()),
        'pending', coalesce(bool_or(u.pending_secret IS NOT NULL
                                    AND u.pending_host = session_user
                                    AND u.pending_until > clock_timestamp()), false),
        'email', twofa.mask(max(u.email)),
        'email_changed_at', CASE WHEN max(u.email_changed_at) IS NOT NULL
                                 THEN twofa.epoch(max(u.email_changed_at)) END)
    FROM twofa.users AS u WHERE u.name = p_user
$$;

-- Finish an enrollment begun on this host (enroll_confirm) and, in the same
-- transaction, the user's ten new recovery codes; what the re-enrollment revoked.
-- An enrolled user's re-enrollment is refused while locked or suspended (begun
-- before: it must not lift them), and a wrong code counts as at a login.
CREATE OR REPLACE FUNCTION twofa_api.enroll_finish(p_user text, p_code text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    s twofa.settings;
    u twofa.users;
    n integer;
    got jsonb;
BEGIN
    SELECT * INTO s FROM twofa.settings;
    SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
    IF u.enrolled AND twofa.refusal(u, t) IS NOT NULL THEN
        RETURN twofa.refusal(u, t);
    END IF;
    SELECT count(*) INTO n FROM twofa.devices WHERE user_name = p_user;
    got := twofa_api.enroll_confirm(p_user, p_code);
    IF got->>'result' = 'bad-code' AND u.enrolled THEN
        RETURN twofa.count_failure(p_user, t, s, 'bad-code');
    END IF;
    IF got->>'result' <> 'ok' THEN
        RETURN got;
    END IF;
    UPDATE twofa.users SET emergency_mac = NULL, emergency_expires = NULL,
           email_pending = NULL, email_pending_host = NULL, email_pending_until = NULL,
           email_pending_proven = NULL
    WHERE name = p_user;
    RETURN jsonb_build_object(
        'result', 'ok', 'devices_revoked', n,
        'emergency_code_revoked', u.emergency_mac IS NOT NULL
                                  AND u.emergency_expires > clock_timestamp(),
        'email_kept', u.email,  -- to its owner, who just proved the new secret
        'codes', twofa_api.new_recovery_codes(
            p_user, twofa.new_grant(p_user, clock_timestamp()))->'codes');
END $$;

-- Turn 2FA off with a grant (the user proved the second factor on this host); the
-- lockout history stays, the secret, codes, devices and grants go.
CREATE OR REPLACE FUNCTION twofa_api.disable(p_user text, p_grant text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
BEGIN
    PERFORM 1 FROM twofa.users WHERE name = p_user FOR UPDATE;
    IF NOT twofa.use_grant(p_user, p_grant, t) THEN
        RETURN jsonb_build_object('result', 'no-grant');
    END IF;
    UPDATE twofa.users SET enrolled = false, secret = NULL, enrolled_at = NULL,
           last_step = -1, pending_secret = NULL, pending_digits = NULL,
           pending_period = NULL, pending_algorithm = NULL, pending_host = NULL,
           pending_until = NULL, emergency_mac = NULL, emergency_expires = NULL
    WHERE name = p_user;
    DELETE FROM twofa.recovery_codes WHERE user_name = p_user;
    DELETE FROM twofa.devices WHERE user_name = p_user;
    DELETE FROM twofa.grants WHERE user_name = p_user;
    RETURN jsonb_build_object('result', 'ok');
END $$;

-- The user names a security email on this host: an enrolled user with a grant.
CREATE OR REPLACE FUNCTION twofa_api.email_begin(p_user text, p_grant text, p_address text,
                                                 p_seconds integer) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    u twofa.users;
BEGIN
    IF p_address IS NULL OR p_address !~ '^[^@\s]+@[^@\s]+$' OR length(p_address) > 254
       OR p_seconds NOT BETWEEN 60 AND 3600 THEN
        RETURN jsonb_build_object('result', 'bad-parameters');
    END IF;
    INSERT INTO twofa.users (name) VALUES (p_user) ON CONFLICT DO NOTHING;
    SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
    IF u.enrolled AND NOT twofa.use_grant(p_user, p_grant, t) THEN
        RETURN jsonb_build_object('result', 'no-grant');
    END IF;
    UPDATE twofa.users SET email_pending = p_address, email_pending_host = session_user,
           email_pending_until = t + make_interval(secs => p_seconds),
           email_pending_proven = u.enrolled
    WHERE name = p_user;
    RETURN jsonb_build_object('result', 'ok');
END $$;

-- The mailed code matched on the host that named the address: make it the security
-- email (a change voids a live emergency code and starts the hold). The old address
-- goes back to this host, which tells its owner.
CREATE OR REPLACE FUNCTION twofa_api.email_set(p_user text, p_address text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    u twofa.users;
BEGIN
    SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
    IF u.name IS NULL OR u.email_pending IS DISTINCT FROM p_address
       OR u.email_pending_host <> session_user OR u.email_pending_until <= t THEN
        RETURN jsonb_build_object('result', 'no-pending');
    END IF;
    UPDATE twofa.users SET email_pending = NULL, email_pending_host = NULL,
           email_pending_until = NULL, email_pending_proven = NULL
    WHERE name = p_user;
    IF u.enrolled AND u.email_pending_proven IS NOT TRUE THEN
        RETURN jsonb_build_object('result', 'not-proven');
    END IF;
    IF u.email IS DISTINCT FROM p_address THEN
        UPDATE twofa.users SET email = p_address, email_changed_at = t, emergency_mac = NULL,
               emergency_expires = NULL
        WHERE name = p_user;
        u.email_changed_at := t;
    END IF;
    RETURN jsonb_build_object('result', 'ok', 'old', u.email,
                              'email_changed_at', CASE WHEN u.email_changed_at IS NOT NULL
                                  THEN twofa.epoch(u.email_changed_at) END);
END $$;

RESET ROLE;

-- Only the listed roles may call; nothing else can (EXECUTE is PUBLIC's by default).
-- (Schema twofa needs no REVOKE: no role but its owner may use it, and pgcrypto's
-- functions there must stay callable by twofa_owner.)
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA twofa_api FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    twofa_api.check_code(text, text),
    twofa_api.skip_device(text, text, text, text),
    twofa_api.add_device(text, text, text, text, text),
    twofa_api.first_seen(text),
    twofa_api.status(text),
    twofa_api.enrolled_users(),
    twofa_api.enrolled_since(double precision),
    twofa_api.enroll_begin(text, text, integer, integer, text),
    twofa_api.enroll_confirm(text, text),
    twofa_api.new_recovery_codes(text, text),
    twofa_api.devices(text),
    twofa_api.revoke_device(text, text),
    twofa_api.emergency_begin(text),
    twofa_api.emergency_check(text, text),
    twofa_api.hello()
TO twofa_host;
GRANT EXECUTE ON FUNCTION
    twofa_api.admin_import(text, bytea, integer, integer, text, bigint, text, boolean),
    twofa_api.admin_set_recovery_codes(text, text[]),
    twofa_api.admin_reset(text),
    twofa_api.admin_unlock(text),
    twofa_api.admin_set_email(text, text),
    twofa_api.admin_devices(text),
    twofa_api.admin_revoke_devices(text, text),
    twofa_api.admin_status(),
    twofa_api.status(text),
    twofa_api.enrolled_users()
TO twofa_admin;

-- ---------------------------------------------------------------- admin: enroll, report
SET ROLE twofa_owner;

-- `twofa-admin enroll`: the admin host made ``p_secret`` and shows it; the old
-- secret's devices, grants, recovery codes, emergency code and pending enrollment go;
-- ``p_codes`` (normalised digits) become the recovery codes (MACs). With p_replace
-- false an enrolled user is left alone ('enrolled').
CREATE OR REPLACE FUNCTION twofa_api.admin_enroll(p_user text, p_secret bytea,
                                                  p_digits integer, p_period integer,
                                                  p_algorithm text, p_codes text[],
                                                  p_replace boolean) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    t timestamptz := clock_timestamp();
    u twofa.users;
    n integer;
BEGIN
    IF p_digits NOT BETWEEN 6 AND 10 OR p_period NOT BETWEEN 1 AND 3600
       OR p_algorithm NOT IN ('SHA1', 'SHA256', 'SHA512') OR octet_length(p_secret) < 16
       OR EXISTS (SELECT 1 FROM unnest(p_codes) AS c WHERE c !~ '^[0-9]{8,10}$') THEN
        RETURN jsonb_build_object('result', 'bad-parameters');
    END IF;
    INSERT INTO twofa.users (name) VALUES (p_user) ON CONFLICT DO NOTHING;
    SELECT * INTO u FROM twofa.users WHERE name = p_user FOR UPDATE;
    IF u.enrolled AND NOT p_replace THEN
        RETURN jsonb_build_object('result', 'enrolled');
    END IF;
    DELETE FROM twofa.devices WHERE user_name = p_user;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM twofa.grants WHERE user_name = p_user;
    DELETE FROM twofa.recovery_codes WHERE user_name = p_user;
    INSERT INTO twofa.recovery_codes (user_name, mac, slow)
    SELECT p_user, twofa.hmac(convert_to(c, 'UTF8'), s.pepper, 'sha256'), twofa.slow_hash(c)
    FROM unnest(p_codes) AS c, twofa.settings AS s ON CONFLICT DO NOTHING;
    UPDATE twofa.users SET enrolled = true, secret = p_secret, digits = p_digits,
           period = p_period, algorithm = p_algorithm, enrolled_at = t, last_step = -1,
           failures = 0, recent_failures = '{}', lock_level = 0, locked_until = '-infinity',
           suspended = false, pending_secret = NULL, pending_digits = NULL,
           pending_period = NULL, pending_algorithm = NULL, pending_host = NULL,
           pending_until = NULL, emergency_mac = NULL, emergency_expires = NULL,
           email_pending = NULL, email_pending_host = NULL, email_pending_until = NULL,
           email_pending_proven = NULL
    WHERE name = p_user;
    RETURN jsonb_build_object(
        'result', 'ok', 'devices_revoked', n,
        'emergency_code_revoked', u.emergency_mac IS NOT NULL AND u.emergency_expires > t,
        'email_pending_dropped', u.email_pending IS NOT NULL AND u.email_pending_until > t,
        'email_kept', u.email);
END $$;

-- `twofa-admin recovery-codes`: ``p_codes`` replace an enrolled user's codes (the
-- count stored), or NULL when the user is not enrolled.
CREATE OR REPLACE FUNCTION twofa_api.admin_recovery_codes(p_user text, p_codes text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    PERFORM 1 FROM twofa.users WHERE name = p_user AND enrolled FOR UPDATE;
    IF NOT FOUND OR EXISTS (SELECT 1 FROM unnest(p_codes) AS c
                            WHERE c !~ '^[0-9]{8,10}$') THEN
        RETURN NULL;
    END IF;
    DELETE FROM twofa.recovery_codes WHERE user_name = p_user;
    INSERT INTO twofa.recovery_codes (user_name, mac, slow)
    SELECT p_user, twofa.hmac(convert_to(c, 'UTF8'), s.pepper, 'sha256'), twofa.slow_hash(c)
    FROM unnest(p_codes) AS c, twofa.settings AS s ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- `twofa-admin report`: every user with a row, in one query (times as epochs, a lock
-- only while it lasts); never a secret.
CREATE OR REPLACE FUNCTION twofa_api.admin_report()
RETURNS TABLE (name text, enrolled boolean, first_seen double precision,
               locked_until double precision, suspended boolean,
               last_success double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    SELECT u.name, u.enrolled,
           CASE WHEN u.first_seen IS NOT NULL THEN twofa.epoch(u.first_seen) END,
           CASE WHEN u.locked_until > clock_timestamp() THEN twofa.epoch(u.locked_until) END,
           u.suspended,
           CASE WHEN u.last_success IS NOT NULL THEN twofa.epoch(u.last_success) END
    FROM twofa.users AS u ORDER BY u.name
$$;

-- The user's address, for the notice `twofa-admin reset` mails (read before the reset).
CREATE OR REPLACE FUNCTION twofa_api.admin_email(p_user text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twofa, pg_temp AS $$
    SELECT email FROM twofa.users WHERE name = p_user
$$;

RESET ROLE;
REVOKE ALL ON FUNCTION
    twofa_api.admin_email(text),
    twofa_api.admin_enroll(text, bytea, integer, integer, text, text[], boolean),
    twofa_api.admin_recovery_codes(text, text[]),
    twofa_api.admin_report()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    twofa_api.admin_email(text),
    twofa_api.admin_enroll(text, bytea, integer, integer, text, text[], boolean),
    twofa_api.admin_recovery_codes(text, text[]),
    twofa_api.admin_report()
TO twofa_admin;

-- The enrollment service of a fleet host (fleet/hoststore.py).
GRANT EXECUTE ON FUNCTION
    twofa_api.prove(text, text),
    twofa_api.account(text),
    twofa_api.enroll_finish(text, text),
    twofa_api.disable(text, text),
    twofa_api.email_begin(text, text, text, integer),
    twofa_api.email_set(text, text)
TO twofa_host;

-- Offline break-glass (store.postgresql.offline: recovery-codes).
GRANT EXECUTE ON FUNCTION
    twofa_api.offline_codes(text),
    twofa_api.offline_report(text, text[], integer)
TO twofa_host;
