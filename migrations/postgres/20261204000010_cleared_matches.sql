-- What compliance cleared: this user is not this listed entry *as the list then described it*
-- (its fingerprint: names, aliases, remarks with dates of birth and documents, programs,
-- addresses). Re-screening against a later list skips a cleared pair whose entry is unchanged;
-- an entry that changed, or a new entity, flags the user again. Rows are never updated.
CREATE TABLE cleared_matches (
    user_id     BIGINT NOT NULL REFERENCES users (id),
    entity_id   BIGINT NOT NULL,
    fingerprint TEXT    NOT NULL,
    list_id     BIGINT NOT NULL REFERENCES sanctions_lists (id),
    cleared_by  TEXT    NOT NULL,
    cleared_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, entity_id, fingerprint)
);
