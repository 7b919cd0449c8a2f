-- Seed 000: a user registered by its partner under the partner's own id.
ALTER TABLE users ADD COLUMN external_user_id TEXT CHECK (length(external_user_id) BETWEEN 1 AND 1020);
ALTER TABLE users ADD COLUMN auth_method TEXT CHECK (auth_method IN ('EMAIL', 'PHONE_NUMBER', 'NONE'));
ALTER TABLE users ADD COLUMN identifier TEXT;
ALTER TABLE users ADD COLUMN user_type TEXT CHECK (user_type IN ('INDIVIDUAL', 'BUSINESS'));
ALTER TABLE users ADD COLUMN alias TEXT;

-- Replays never create a second user: the database says which registration came first, also
-- across nodes. NULLs (users from other surfaces) never collide.
CREATE UNIQUE INDEX users_partner_external_id ON users (partner_id, external_user_id);
