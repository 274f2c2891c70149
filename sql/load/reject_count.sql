SELECT count(*) FROM load_checked WHERE reason IS NOT NULL
