-- The certificate a node serves an app with when it holds it apart from the
-- app (ACME, owner): issuer, end of validity and the last error obtaining
-- or renewing it, as JSON (`mse_api::event::ServedCertificate`), as the node
-- last reported. NULL until the node said.
ALTER TABLE apps ADD COLUMN certificate TEXT;
