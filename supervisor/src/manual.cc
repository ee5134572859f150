#include "gatehouse/supervisor/manual.h"

#include <optional>
#include <sstream>
#include <string_view>

#include "gatehouse/base/version.h"
#include "gatehouse/supervisor/settings_table.h"

namespace gatehouse::supervisor {
namespace {

/// Text as roff shows it literally: backslashes escaped, hyphens as the
/// minus sign options need (so that they can be copied and searched), and
/// a line that would start with a control character protected.
std::string roff(std::string_view text) {
  std::string out;
  bool line_start = true;
  for (const char c : text) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    switch (c) {
      case '\\':
        out += "\\e";
        break;
      case '-':
        out += "\\-";
        break;
      default:
        out += c;
    }
    line_start = c == '\n';
  }
  return out;
}

void header(std::ostream& out, std::string_view title, int section, std::string_view name,
            std::string_view summary) {
  out << ".\\\" Written by `gatehouse --print-manual " << section
      << "` from the settings table (supervisor/src/settings_table.cc).\n"
      << ".TH " << title << " " << section << " \"\" \"gatehouse " << roff(version()) << "\" \""
      << (section == 8 ? "System Administration" : "File Formats") << "\"\n"
      << ".SH NAME\n"
      << roff(name) << " \\- " << roff(summary) << "\n";
}

/// Each setting of the table as a tagged paragraph: `lead` ("\\-\\-" for
/// options, "" for the file's keys), its value, default and reload class.
void settings(std::ostream& out, std::string_view lead) {
  std::optional<Section> section;
  for (const Setting& s : settings_table()) {
    if (s.section != section) {
      section = s.section;
      out << ".SS " << roff(section_title(s.section)) << "\n";
    }
    out << ".TP\n\\fB" << lead << roff(s.name) << "\\fR";
    if (s.kind != Kind::kBool) out << " \\fIvalue\\fR";
    out << "\n" << roff(s.help) << ".";
    if (*s.default_text != '\0') out << " Default: \\fB" << roff(s.default_text) << "\\fR.";
    if (s.kind == Kind::kStrings) out << " Repeatable.";
    if (s.kind == Kind::kSeconds) out << " In seconds (decimals allowed).";
    out << " On reload: " << roff(reload_text(s)) << ".\n";
  }
}

std::string gatehouse_8() {
  std::ostringstream out;
  header(out, "GATEHOUSE", 8, "gatehouse", "game gateway supervisor");
  out << R"(.SH SYNOPSIS
.B gatehouse
[\fIoptions\fR]
.br
.B gatehouse \-\-check
[\fIoptions\fR]
.br
.B gatehouse keygen \-\-out
\fIFILE\fR
.br
.B gatehouse token\-keygen \-\-out
\fISTEM\fR
.br
.B gatehouse token \-\-key
\fISTEM.key\fR \fB\-\-uid\fR \fIN\fR [\fB\-\-ttl\fR \fISECONDS\fR] [\fB\-\-audience\fR \fINAME\fR]
.br
.B gatehouse token\-hash
\fIFILE\fR
.SH DESCRIPTION
Gatehouse terminates game clients' TCP connections (and KCP over UDP where a
listener says so), frames their packets, runs the key exchange and stream
encryption, rejects replays and floods, closes dead links, and carries every
logged\-in player to a game service over gRPC; game services push messages
and kicks back. It speaks the protocol of the gonet2 agent, so that gonet2
clients and game services work with it unchanged.
.PP
.B gatehouse
is the supervisor: it opens the listeners, creates the shared\-memory segment
.IR /dev/shm/gatehouse\-INSTANCE ,
and starts and watches its children: \fBgatehouse\-frontend\fR (the sockets),
\fBgatehouse\-worker\fR (sessions, one per \fB\-\-workers\fR) and
\fBgatehouse\-bridge\fR (the game services' gRPC streams, one per \fB\-\-bridges\fR), from
\fB\-\-bin\-dir\fR. A worker that crashes or hangs is replaced without its
players noticing. It serves Prometheus metrics on \fB\-\-metrics\-listen\fR and
speaks systemd's notify protocol (READY, RELOADING, STOPPING, STATUS, WATCHDOG).
.PP
.B gatehousectl
talks to a running gateway over its admin socket (\fB\-\-admin\-socket\fR,
mode 0600): \fBstatus\fR, \fBsessions\fR [\fB\-\-user\fR \fIID\fR],
\fBkick\fR \fIUSER\fR|\fICONN\fR [\fIREASON\fR], \fBbackends\fR,
\fBbackend disable\fR|\fBenable\fR \fINAME\fR, \fBconfig\fR (each value
with its origin) and \fBreload\fR (the check's result, then what the reload
applied, or why it was refused: exit 1). \fBgatehousectl \-\-help\fR lists
them; every request is logged with the caller's uid and counted.
.PP
Every setting is a command\-line option and a key of the configuration file
(\fBgatehouse.conf\fR(5)); the command line wins.
.SH COMMANDS
.TP
\fB\-\-help\fR
The options, their defaults and what a reload does with each.
.TP
\fB\-\-version\fR
The version and the source revision it was built from.
.TP
\fB\-\-check\fR
Reads the configuration and the files it names (keys, token tables), checks
that the child programs are there, prints the effective settings and exits:
0 when the gateway would start with them.
.TP
\fB\-\-print\-example\-config\fR
A configuration file with every setting, its help and its default.
.TP
\fB\-\-print\-manual\fR \fISECTION\fR
This page (8) or \fBgatehouse.conf\fR(5) (5), as roff.
.TP
\fBkeygen \-\-out\fR \fIFILE\fR
A new gateway key pair for the modern key exchange: \fIFILE\fR (private, mode
0600, for \fBgateway\-key\fR) and \fIFILE\fR.pub (what clients pin).
.TP
\fBtoken\-keygen\fR, \fBtoken\fR, \fBtoken\-hash\fR
Signed login tokens: a key pair, a token for one user, and a hashed token
table for \fBlogin = tokens:\fR\fIFILE\fR. Each command has \fB\-\-help\fR.
.SH OPTIONS
)";
  settings(out, "\\-\\-");
  out << R"(.SH SIGNALS
.TP
.B SIGHUP
Reload: the configuration is read again; settings marked live apply at
once, then the workers are replaced one at a time from the binaries on disk.
A configuration that does not parse is refused and the running one stays.
\fBgatehousectl reload\fR (the unit's \fBExecReload\fR) does the same and
answers with the result, so that \fBsystemctl reload\fR fails with the
reason.
.TP
.BR SIGTERM ", " SIGINT
Drain: stop accepting, close every session with reason \fBshutdown\fR after
its output, half\-close the game streams, then exit.
.SH EXIT STATUS
0 on a clean stop or a passing \fB\-\-check\fR; 1 when \fB\-\-check\fR finds a
problem or the gateway cannot serve; 2 for a configuration that does not parse.
.SH LOGGING
One line per event on stderr; under systemd each goes to the journal with its
priority (\fBjournalctl \-p warning\fR shows the kicks, \fB\-p err\fR the
failures) and its \fIkey\fB=\fIvalue\fR words as fields of their own:
\fBGATEHOUSE_USER\fR, \fBGATEHOUSE_CONN\fR, \fBGATEHOUSE_REMOTE\fR,
\fBGATEHOUSE_REASON\fR and the others a line carries, and
\fBGATEHOUSE_PROCESS\fR (supervisor, frontend, bridge, worker\-N). So
\fBjournalctl \-u gatehouse@main GATEHOUSE_USER=1001\fR shows one player's
lines. Text a client chose is quoted and escaped, and never becomes a field.
\fBlog\-connections\fR bounds the per\-session lines of a busy gateway.
.SH FILES
.TP
.I /etc/gatehouse/INSTANCE.conf
The configuration of \fBgatehouse@INSTANCE.service\fR.
.TP
.I /dev/shm/gatehouse\-INSTANCE
The shared\-memory segment of a running instance (rings, session table,
counters).
.TP
.I /run/gatehouse/INSTANCE/admin.sock
The admin socket \fBgatehousectl\fR uses (\fB\-\-admin\-socket\fR).
.TP
.I /usr/libexec/gatehouse/
The child programs (packaged installs; \fB\-\-bin\-dir\fR).
.TP
.I /usr/share/doc/gatehouse/
The README, the protocol, metrics, login and security documents.
.TP
.I /usr/share/gatehouse/monitoring/
A Grafana dashboard and Prometheus alert rules.
.SH SEE ALSO
.BR gatehouse.conf (5),
.BR systemctl (1),
.BR journalctl (1)
)";
  return out.str();
}

std::string gatehouse_conf_5() {
  std::ostringstream out;
  header(out, "GATEHOUSE.CONF", 5, "gatehouse.conf", "Gatehouse game gateway configuration");
  out << R"(.SH SYNOPSIS
.I /etc/gatehouse/INSTANCE.conf
.SH DESCRIPTION
One setting a line, \fIkey\fR = \fIvalue\fR; \fB#\fR starts a comment. A
repeatable key (\fBlisten\fR, \fBbackend\fR, ...) may appear on several
lines. Every key is also an option of \fBgatehouse\fR(8) (\fB\-\-\fR\fIkey\fR
\fIvalue\fR), which wins over the file. Durations are seconds, with decimals.
.PP
\fBsystemctl reload\fR (SIGHUP) reads the file again: a setting marked
\fIlive\fR changes then, one marked \fIrestart\fR keeps its running value
until the next start and the reload says so in the log. Check a file before
using it: \fBgatehouse \-\-config\fR \fIFILE\fR \fB\-\-check\fR.
.SH SETTINGS
)";
  settings(out, "");
  out << R"(.SH EXAMPLE
\fBgatehouse \-\-print\-example\-config\fR prints a file with every setting and
its default; the package installs one as \fI/etc/gatehouse/main.conf\fR.
.SH SEE ALSO
.BR gatehouse (8)
)";
  return out.str();
}

}  // namespace

std::string manual_page(int section) {
  switch (section) {
    case 8:
      return gatehouse_8();
    case 5:
      return gatehouse_conf_5();
    default:
      return {};
  }
}

}  // namespace gatehouse::supervisor
