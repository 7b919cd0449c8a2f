-- More than one sanctions list (issue 25): each version names its list, the files table takes
-- every list's file names, and a partner may be screened against some lists only.
ALTER TABLE sanctions_lists ADD COLUMN list TEXT NOT NULL DEFAULT 'ofac-sdn'
    CHECK (list IN ('ofac-sdn', 'ofac-cons', 'un', 'eu', 'uk'));
-- The newest version of each list.
CREATE INDEX sanctions_lists_list ON sanctions_lists (list, id);

-- SQLite cannot drop a CHECK: the table is rebuilt with the names each list publishes under.
CREATE TABLE sanctions_list_files_new (
    list_id INTEGER NOT NULL REFERENCES sanctions_lists (id),
    name    TEXT    NOT NULL CHECK (name IN ('sdn.csv', 'alt.csv', 'add.csv', 'sdn_comments.csv',
                                             'cons_prim.csv', 'cons_alt.csv', 'cons_add.csv', 'cons_comments.csv',
                                             'consolidated.xml', 'eu_fsf.xml', 'UK_Sanctions_List.xml')),
    content BLOB    NOT NULL,
    PRIMARY KEY (list_id, name)
);
INSERT INTO sanctions_list_files_new (list_id, name, content) SELECT list_id, name, content FROM sanctions_list_files;
DROP TABLE sanctions_list_files;
ALTER TABLE sanctions_list_files_new RENAME TO sanctions_list_files;

-- The lists a partner's users are screened against, comma-separated; NULL: every list loaded.
ALTER TABLE partners ADD COLUMN sanctions_lists TEXT
    CHECK (sanctions_lists IS NULL OR length(sanctions_lists) BETWEEN 1 AND 200);
