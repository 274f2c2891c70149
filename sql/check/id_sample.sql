-- A failing row's sample: its id (the row in full only with --show-samples).
'id=' || id
