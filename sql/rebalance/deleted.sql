-- On a move's source: whether the move's delete committed here.
SELECT EXISTS (SELECT FROM rebalance_ledger WHERE move_id = %s AND step = 'deleted')
