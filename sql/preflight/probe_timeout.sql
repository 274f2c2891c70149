-- The probe's statements are instant; a server that hangs must not hang the command.
SET LOCAL statement_timeout = '10s'
