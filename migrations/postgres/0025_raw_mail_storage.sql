-- Raw mail is compressed by taxinbox (zstd) before it is stored, or kept as it came when it would not shrink: the
-- server's own TOAST compression (pglz) cannot shrink it further, yet tries on every row, and on zstd output it can
-- scan most of the value before it gives up (pglz_compress was 8 % of the server's CPU in a pass over 2,000 mails of
-- 138 KB). EXTERNAL keeps the value out of line, uncompressed. Rows stored before keep how they were stored.
ALTER TABLE raw_mail ALTER COLUMN content SET STORAGE EXTERNAL;
