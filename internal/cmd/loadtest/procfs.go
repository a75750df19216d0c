package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK) needs cgo).
const clockTicks = 100

// errProcFormat reports a /proc file that does not have the expected shape.
var errProcFormat = errors.New("unexpected /proc format")

// procCPU returns the CPU time (user + system) a process has used, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(data)
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a /proc/<pid>/stat line. The
// command name (field 2) may contain spaces and parentheses, so fields are counted after the
// last ')'.
func parseStatCPU(data []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat without ')'", errProcFormat)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state), so utime (14) is f[11] and stime (15) is f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: stat has %d fields after the name", errProcFormat, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: bad tick count %q", errProcFormat, s)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// memStatus is the memory part of /proc/<pid>/status, in bytes.
type memStatus struct {
	RSS  int64 // VmRSS: resident now
	Peak int64 // VmHWM: peak resident ("high water mark")
}

// procMem reads VmRSS and VmHWM of a process ("self" for this one).
func procMem(pid string) (memStatus, error) {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return memStatus{}, err
	}
	return parseStatusMem(data)
}

// parseStatusMem reads VmRSS and VmHWM ("NAME:   1234 kB" lines) of a /proc/<pid>/status.
func parseStatusMem(data []byte) (memStatus, error) {
	var m memStatus
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		var dst *int64
		switch {
		case !ok:
			continue
		case name == "VmRSS":
			dst = &m.RSS
		case name == "VmHWM":
			dst = &m.Peak
		default:
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return memStatus{}, fmt.Errorf("%w: %s line %q", errProcFormat, name, rest)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return memStatus{}, fmt.Errorf("%w: %s value %q", errProcFormat, name, f[0])
		}
		*dst = kb << 10
		found++
	}
	if found != 2 {
		return memStatus{}, fmt.Errorf("%w: VmRSS or VmHWM missing", errProcFormat)
	}
	return m, nil
}

// resetPeakRSS resets the VmHWM of this process to its current RSS (Linux ≥ 4.0,
// /proc/self/clear_refs value 5). It reports whether the reset worked.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// selfCPU returns the CPU time (user + system) this whole process has used.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
