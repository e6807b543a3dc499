"""One test module per built-in regularizer's module of regbench/regularizers/ (branch.py's tensor
operations with drop_path's and shakedrop's): the regularizer's oracle checks (torch, torchvision,
scikit-learn, hand-computed values), its properties and its refusals. The generic contract every
registered regularizer meets is tests/test_contract.py; tests of several regularizers together,
and of the protocol and the registry, stay in tests/."""
