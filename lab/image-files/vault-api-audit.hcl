# The lab's Vault is OpenBao, which (from 2.3.2) refuses to enable an audit device through the API unless
# its server config opts in; HashiCorp Vault 1.20, which the stack pins, allows it. The program enables its
# audit device through the API for distribution `vault` (vault.Audit), so the lab image opts in.
unsafe_allow_api_audit_creation = true
