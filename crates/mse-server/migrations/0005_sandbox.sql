-- How each app's node confines it, as the node reports it when it starts
-- (`landlock ABI 7, uid …`, or `UNSANDBOXED: why` where the operator opted
-- out). NULL until the node said.
ALTER TABLE apps ADD COLUMN sandbox TEXT;
