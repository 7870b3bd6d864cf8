-- Used SignatureNonces now live in a file of their own beside the store (NAME.nonces.db):
-- one commit per batch of signed requests no longer invalidates the catalog readers' page
-- caches or queues behind image writes. The store copies any rows here into that file
-- before this migration runs.

DROP TABLE signature_nonces;
