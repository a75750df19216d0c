package main

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// The token vending settings (PLUGBOARD_SERVICE_ACCOUNT_KEY and friends).

func setServiceAccountKey(c *Config, v string) error {
	c.ServiceAccountKey = v
	if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		c.ServiceAccountKey = ""
		return fmt.Errorf("must not contain spaces or control characters (the key is not shown)")
	}
	return nil
}

func setPathID(c *Config, v string) error {
	c.PathID = ""
	if v == "" {
		return nil
	}
	if u, err := uuid.Parse(v); err != nil || u.String() != v {
		return fmt.Errorf("must be a lower-case UUID, got %q", v)
	}
	c.PathID = v
	return nil
}

func setAPIURL(c *Config, v string) error {
	c.APIURL = ""
	if v == "" {
		return nil
	}
	u, err := parseHTTPURL(v)
	if err != nil {
		return err
	}
	if u.User != nil {
		return fmt.Errorf("must not carry user info")
	}
	c.APIURL = v
	return nil
}

// vendingWarnings flags vending settings that have no effect, and a key whose vended tokens
// are kept in memory only.
func (c *Config) vendingWarnings(given map[string]string) []string {
	var w []string
	if c.ServiceAccountKey == "" {
		for _, name := range []string{"PLUGBOARD_PATH_ID", "PLUGBOARD_API_URL", "TELEPHONE_INSTANCE_ID"} {
			if given[name] != "" {
				w = append(w, name+" is ignored without PLUGBOARD_SERVICE_ACCOUNT_KEY")
			}
		}
		return w
	}
	if c.TokenDBPath == "" {
		w = append(w, "PLUGBOARD_SERVICE_ACCOUNT_KEY without SECRET_KEY_BASE: vended tokens are kept in memory, so every restart vends a new one")
	}
	return w
}
