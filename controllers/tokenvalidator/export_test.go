package tokenvalidator

// ValidatorScans is the number of scans of every TokenValidator that Secret and ConfigMap events
// caused, for tests of the bound.
func ValidatorScans() int64 { return validatorScans.Load() }
