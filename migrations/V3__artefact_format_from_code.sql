-- Which formats exist is the renderer's to say (one enum, matched exhaustively): the database
-- keeps only the shape of a format's name, so adding a format needs no migration.
ALTER TABLE artefacts DROP CONSTRAINT artefacts_format_check;
ALTER TABLE artefacts ADD CONSTRAINT artefacts_format_plain CHECK (format ~ '^[a-z0-9]{1,16}$');
