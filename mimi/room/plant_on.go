//go:build mimi_plant

package room

// plantsCompiled, in builds with the mimi_plant tag only, lets a test switch
// off one rule of a room (Config.plant) to prove that the adversarial
// test's checkers notice the violation (TestAdversarialCatchesPlants).
const plantsCompiled = true
