// Package testnet holds network helpers for the project's tests.
package testnet
