//go:build tools

// Package deps pins the project's chosen third-party modules (DESIGN.md) in
// go.mod while the packages that use them are being written. It is never built.
package deps

import (
	_ "github.com/coder/websocket"
	_ "github.com/google/uuid"
	_ "github.com/joho/godotenv"
	_ "github.com/lestrrat-go/jwx/v2/jwt"
	_ "github.com/lmittmann/tint"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/sony/gobreaker/v2"
	_ "go.uber.org/goleak"
	_ "golang.org/x/time/rate"
	_ "modernc.org/sqlite"
)
