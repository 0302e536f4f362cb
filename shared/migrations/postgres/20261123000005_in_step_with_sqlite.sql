-- Nothing to change. SQLite's 0004 (processed events WITHOUT ROWID) has no PostgreSQL
-- counterpart, and PostgreSQL's 0004 is SQLite's 0005 (desk sessions). From 0006 on, both
-- folders give the same change the same number.
SELECT 1;
