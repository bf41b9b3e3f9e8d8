-- One noun for the firm's register of clients and people throughout: the directory.
ALTER TABLE register_generation RENAME TO directory_generation;
