package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/mimihub/mimi-hub/internal/buildinfo"
)

// env is one invocation's environment: its output streams and the common
// flags every command accepts.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	// profile is the -profile flag ("" until resolved by profileDir).
	profile string
	// json selects machine output (one JSON object per line).
	json bool
	// verbose turns on debug logs.
	verbose bool
}

// runFunc runs a command with its positional arguments.
type runFunc func(ctx context.Context, e *env, args []string) error

// command is a mimictl command, or a group of subcommands.
type command struct {
	name string
	// synopsis shows the arguments after the flags, e.g. "ROOM TEXT...".
	synopsis string
	// summary is one line for the command list.
	summary string
	// help is the long description printed by -h.
	help string
	// setup defines the command's flags on fs and returns the function
	// that runs it once they are parsed. Nil for groups.
	setup func(fs *flag.FlagSet) runFunc
	// sub are a group's subcommands.
	sub []*command
	// noProfile hides the common -profile flag (commands that use none).
	noProfile bool
	// hidden keeps the command out of the command list: it is started by
	// mimictl itself (bench's baseline nodes), not by people.
	hidden bool
}

// commands returns mimictl's command table, in the order `mimictl help`
// lists it. Client commands live in clientcmds.go, roomcmds.go and
// usercmds.go, operator commands in opscmds.go, bench in bench.go; a new
// group (for example `cluster`) adds one line here.
func commands() []*command {
	return []*command{
		registerCommand(),
		linkCommand(),
		inviteDeviceCommand(),
		approveCommand(),
		devicesCommand(),
		revokeCommand(),
		cancelInviteCommand(),
		passwordCommand(),
		whoamiCommand(),
		publishKeysCommand(),
		createRoomCommand(),
		roomsCommand(),
		membersCommand(),
		addCommand(),
		removeCommand(),
		rolesCommand(),
		commitCommand(),
		joinCommand(),
		leaveCommand(),
		sendCommand(),
		watchCommand(),
		consentCommand(),
		reportCommand(),
		whoisCommand(),
		statusCommand(),
		reportsCommand(),
		usersCommand(),
		clusterCommand(),
		drillCommand(),
		benchCommand(),
		baselineNodeCommand(),
	}
}

// usageError is a mistake in the command line.
type usageError struct {
	msg  string
	hint string
}

func (e *usageError) Error() string { return e.msg }

// usagef returns a usage error for the command at path.
func usagef(path, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...), hint: fmt.Sprintf("Run 'mimictl help %s' for usage.", path)}
}

// dispatch finds the command args name and runs it.
func (e *env) dispatch(ctx context.Context, args []string) error {
	top := flag.NewFlagSet("mimictl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	e.commonFlags(top, true)
	version := top.Bool("version", false, "print the version and VCS revision, then exit")
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			e.printUsage(e.stdout, nil, nil)
			return flag.ErrHelp
		}
		return &usageError{msg: err.Error(), hint: "Run 'mimictl help' for usage."}
	}
	if *version {
		fmt.Fprintln(e.stdout, buildinfo.Read().Line("mimictl"))
		return nil
	}
	args = top.Args()
	if len(args) == 0 {
		e.printUsage(e.stderr, nil, nil)
		return &usageError{msg: "no command given"}
	}
	if args[0] == "help" {
		return e.help(args[1:])
	}
	var path []*command
	list := commands()
	for {
		c := find(list, args[0])
		if c == nil {
			if len(path) == 0 {
				return &usageError{msg: fmt.Sprintf("unknown command %q", args[0]), hint: "Run 'mimictl help' for the list of commands."}
			}
			return usagef(pathName(path), "unknown %s command %q", pathName(path), args[0])
		}
		path = append(path, c)
		args = args[1:]
		if c.setup != nil {
			break
		}
		if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
			e.printUsage(e.stderr, path, c.sub)
			if len(args) > 0 {
				return flag.ErrHelp
			}
			return usagef(pathName(path), "%s needs a subcommand", pathName(path))
		}
		list = c.sub
	}
	c := path[len(path)-1]
	fs := e.flagSet(path)
	runner := c.setup(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printFlags(fs, e.stderr)
			return err
		}
		// The flag package's own report went nowhere (flagSet): the
		// error is printed once, by exitCode.
		return usagef(pathName(path), "%v", err)
	}
	return runner(ctx, e, pos)
}

// parseInterspersed parses flags anywhere among the positional arguments
// (`consent grant bob -room club`); after "--" everything is positional
// (`send club -- -5 degrees`).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagSet returns the flag set of the command at path, with the common
// flags and a usage text built from the command's description. The flag
// package's output is discarded: a parse error is reported once by the
// caller, and -h prints the usage through printFlags.
func (e *env) flagSet(path []*command) *flag.FlagSet {
	c := path[len(path)-1]
	name := pathName(path)
	fs := flag.NewFlagSet("mimictl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.commonFlags(fs, !c.noProfile)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n\n", strings.TrimSpace(fmt.Sprintf("mimictl %s [flags] %s", name, c.synopsis)))
		if c.help != "" {
			fmt.Fprintln(w, strings.TrimSpace(c.help))
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, "Flags:")
		fs.PrintDefaults()
	}
	return fs
}

// printFlags prints a flag set's usage to w.
func printFlags(fs *flag.FlagSet, w io.Writer) {
	fs.SetOutput(w)
	fs.Usage()
	fs.SetOutput(io.Discard)
}

// commonFlags defines the flags every command accepts, before or after
// the command name.
func (e *env) commonFlags(fs *flag.FlagSet, profile bool) {
	if profile {
		fs.StringVar(&e.profile, "profile", e.profile, "`NAME` of the profile holding this client's state, including its MLS private keys, in $MIMICTL_HOME (default ~/.mimictl), or its folder when NAME has a slash (default $MIMICTL_PROFILE, else the only profile)")
	}
	fs.BoolVar(&e.json, "json", e.json, "machine-readable output: one JSON object per line")
	fs.BoolVar(&e.verbose, "v", e.verbose, "log debug details (requests, retries) to stderr")
}

func find(list []*command, name string) *command {
	for _, c := range list {
		if c.name == name {
			return c
		}
	}
	return nil
}

func pathName(path []*command) string {
	var names []string
	for _, c := range path {
		names = append(names, c.name)
	}
	return strings.Join(names, " ")
}

// help prints help on a command (`mimictl help add`, `mimictl help consent grant`).
func (e *env) help(args []string) error {
	var path []*command
	list := commands()
	for _, a := range args {
		c := find(list, a)
		if c == nil {
			return &usageError{msg: fmt.Sprintf("no command %q", strings.Join(args, " ")), hint: "Run 'mimictl help' for the list of commands."}
		}
		path = append(path, c)
		list = c.sub
	}
	switch {
	case len(path) == 0:
		e.printUsage(e.stdout, nil, nil)
	case path[len(path)-1].setup == nil:
		e.printUsage(e.stdout, path, path[len(path)-1].sub)
	default:
		fs := e.flagSet(path)
		path[len(path)-1].setup(fs)
		printFlags(fs, e.stdout)
	}
	return nil
}

// printUsage lists the commands of a group (the top level when path is
// empty).
func (e *env) printUsage(w io.Writer, path []*command, list []*command) {
	if len(path) == 0 {
		fmt.Fprint(w, `mimictl is mimi-hub's command-line client, operator tool and load generator.

Usage: mimictl [-profile NAME] [-json] [-v] COMMAND [flags] [arguments]
       mimictl -version

Each client command acts as one MIMI client whose state lives in a profile:
$MIMICTL_HOME/NAME (default ~/.mimictl/NAME), or the folder NAME when it has
a slash. 'register' creates it, named USER@DOMAIN unless -profile says
otherwise; other commands use -profile, $MIMICTL_PROFILE, or the only
profile there is. The profile holds the client's bearer token, MLS private
keys and group secrets: keep it private, and never restore an old copy
(that would reuse message keys). Flags may come before or after the
arguments; "--" ends the flags (mimictl send club -- -5 degrees).

ROOM is a room URI (mimi://a.example/r/club), HUB/ID (a.example/club) or
an ID of a room hosted by this client's provider. USER is a user URI
(mimi://b.example/u/bob), NAME@DOMAIN (bob@b.example) or a NAME at this
client's provider.

Exit status: 0 on success, 1 when the operation failed, 2 for usage errors.

Commands:
`)
		list = commands()
	} else {
		c := path[len(path)-1]
		fmt.Fprintf(w, "Usage: mimictl %s SUBCOMMAND [flags] [arguments]\n\n", pathName(path))
		if c.help != "" {
			fmt.Fprintln(w, strings.TrimSpace(c.help))
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, "Subcommands:")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range list {
		if c.hidden {
			continue
		}
		name := c.name
		if len(path) > 0 {
			name = pathName(path) + " " + c.name
		}
		fmt.Fprintf(tw, "  %s %s\t%s\n", name, c.synopsis, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRun 'mimictl help COMMAND' for a command's flags.")
}

// logger returns the logger of this invocation: warnings and errors on
// stderr, debug lines too with -v.
func (e *env) logger() *slog.Logger {
	level := slog.LevelWarn
	if e.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// providerLogger is the logger of an in-process provider and of bench's
// senders: errors only, everything with -v.
func (e *env) providerLogger() *slog.Logger {
	level := slog.LevelError
	if e.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// profileHome returns the folder that holds the profiles: $MIMICTL_HOME,
// or ~/.mimictl.
func (e *env) profileHome() (string, error) {
	home := e.getenv("MIMICTL_HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no $MIMICTL_HOME and no home folder: %w", err)
		}
		home = filepath.Join(h, ".mimictl")
	}
	abs, err := filepath.Abs(home)
	if err != nil {
		return "", fmt.Errorf("profile home %s: %w", home, err)
	}
	return abs, nil
}

// profileName returns the profile named by -profile or $MIMICTL_PROFILE
// ("" when neither is set).
func (e *env) profileName() string {
	if e.profile != "" {
		return e.profile
	}
	return e.getenv("MIMICTL_PROFILE")
}

// profilePath returns the folder of profile name: name itself when it
// holds a path separator (or is . or ..), else HOME/name.
func (e *env) profilePath(name string) (string, error) {
	if strings.ContainsRune(name, filepath.Separator) || strings.ContainsRune(name, '/') || name == "." || name == ".." {
		abs, err := filepath.Abs(name)
		if err != nil {
			return "", fmt.Errorf("profile %s: %w", name, err)
		}
		return abs, nil
	}
	home, err := e.profileHome()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, name), nil
}

// profileDir resolves the profile folder of a command that needs an
// existing profile: the one -profile or $MIMICTL_PROFILE names, or else
// the only profile in the profile home.
func (e *env) profileDir() (string, error) {
	if name := e.profileName(); name != "" {
		return e.profilePath(name)
	}
	home, err := e.profileHome()
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(home)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("listing the profiles: %w", err)
	}
	var names []string
	for _, d := range entries {
		if _, err := os.Stat(filepath.Join(home, d.Name(), profileFile)); d.IsDir() && err == nil {
			names = append(names, d.Name())
		}
	}
	switch len(names) {
	case 0:
		return "", fmt.Errorf("no profile in %s: run 'mimictl register' first", home)
	case 1:
		return filepath.Join(home, names[0]), nil
	}
	return "", &usageError{msg: fmt.Sprintf("%d profiles in %s (%s): say which with -profile NAME or $MIMICTL_PROFILE", len(names), home, strings.Join(names, ", "))}
}

// printf writes human-readable output (nothing with -json).
func (e *env) printf(format string, args ...any) {
	if !e.json {
		fmt.Fprintf(e.stdout, format, args...)
	}
}

// emit writes v as one JSON line with -json.
func (e *env) emit(v any) error {
	if !e.json {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the output: %w", err)
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

// output writes v as JSON with -json, or text otherwise.
func (e *env) output(v any, text string) error {
	if e.json {
		return e.emit(v)
	}
	_, err := io.WriteString(e.stdout, text)
	return err
}

// wantArgs checks the number of positional arguments.
func wantArgs(path string, args []string, minN, maxN int) error {
	switch {
	case len(args) < minN:
		return usagef(path, "%s: missing arguments", path)
	case maxN >= 0 && len(args) > maxN:
		return usagef(path, "%s: unexpected arguments %q", path, args[maxN:])
	}
	return nil
}
