-- The rows of one file routed to this shard, as read (text), before any check.
-- `country` is already normalised (routing needed it); `country_raw` keeps the
-- spelling from the file when it differed, for the rejects file.
CREATE TEMP TABLE load_staging (
    record       bigint NOT NULL,
    line         bigint,
    country      char(2) NOT NULL,
    country_raw  text,
    id           text,
    name         text,
    gender       text,
    age          text,
    address      text
) ON COMMIT DROP
