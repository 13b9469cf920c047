//go:build !mimi_plant

package room

// plantsCompiled is false in every real build: the checks below it are
// compiled out. See plant_on.go.
const plantsCompiled = false
