package main

import (
	"errors"
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"plain", "1234 (telephone) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000 100", 3 * time.Second, false},
		{"name with spaces and parens", "42 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 7 3 0 0 20 0 1", 100 * time.Millisecond, false},
		{"no paren", "42 telephone S 1", 0, true},
		{"too short", "42 (x) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 5 0", 0, true},
		{"negative", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 -4 5 0", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStatCPU([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, errProcFormat) {
					t.Fatalf("err = %v, want errProcFormat", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStatCPU = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestParseStatusMem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    memStatus
		wantErr bool
	}{
		{"both", "Name:\ttelephone\nVmHWM:\t   2048 kB\nVmRSS:\t    1024 kB\nThreads:\t5\n", memStatus{RSS: 1 << 20, Peak: 2 << 20}, false},
		{"missing hwm", "VmRSS:\t1024 kB\n", memStatus{}, true},
		{"bad unit", "VmRSS:\t1024 MB\nVmHWM:\t1 kB\n", memStatus{}, true},
		{"bad number", "VmRSS:\tx kB\nVmHWM:\t1 kB\n", memStatus{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStatusMem([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, errProcFormat) {
					t.Fatalf("err = %v, want errProcFormat", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStatusMem = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestProcOfThisProcess(t *testing.T) {
	t.Parallel()
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Fatalf("procCPU: %v", err)
	}
	m, err := procMem("self")
	if err != nil || m.RSS <= 0 || m.Peak < m.RSS {
		t.Fatalf("procMem = %+v, %v", m, err)
	}
	if cpu, err := selfCPU(); err != nil || cpu <= 0 {
		t.Fatalf("selfCPU = %v, %v", cpu, err)
	}
	if _, err := procCPU(-1); err == nil {
		t.Fatal("procCPU of a missing process must fail")
	}
	if _, err := procMem("-1"); err == nil {
		t.Fatal("procMem of a missing process must fail")
	}
	resetPeakRSS() // either works or reports false; must not fail the process
}
