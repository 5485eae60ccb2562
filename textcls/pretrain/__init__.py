"""`textcls pretrain`: masked-LM (+ sentence-order) pretraining of the encoder on unlabelled text."""
