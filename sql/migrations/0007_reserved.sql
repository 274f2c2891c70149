-- Reserved: 0007 is the sources migration of #15 (snapshots and delete markers), built on
-- another branch. This stub only lets 0008 apply on the erasure branch: at the merge the
-- real 0007 takes its place, and this file goes.
SELECT 1;
