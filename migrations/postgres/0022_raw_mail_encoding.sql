-- How raw mail's `content` is stored: 'identity' (the bytes as they came: every row written before this migration)
-- or 'zstd' (compressed; `size` stays the size of the mail itself). Readers decode; the SHA-256 is of the mail.
ALTER TABLE raw_mail ADD COLUMN encoding TEXT NOT NULL DEFAULT 'identity';
