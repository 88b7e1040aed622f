-- One canonical form of an email for every use (issue 14): an account is found by
-- lower(email COLLATE "C"), which folds A-Z and nothing else whatever the cluster's
-- locale, exactly as the gateway's login limiter and user-svc's lookups fold it in C
-- (common/src/text.c text_email_canon: surrounding ASCII blanks trimmed, A-Z
-- lower-cased). The locale-dependent lower(email) folded more (É and é), so an
-- address could be one account to the database and two to the limiter.
--
-- Every pair of rows distinct under lower(email) is distinct under the narrower
-- ASCII fold too, so the new index always builds on existing data.
CREATE UNIQUE INDEX users_email_canon_key ON users (lower(email COLLATE "C"));
DROP INDEX users_email_key;
