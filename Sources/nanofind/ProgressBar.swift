import Foundation

/// A one-line progress bar on stderr: redrawn in place on a terminal, a line every 10 % otherwise.
final class ProgressBar: @unchecked Sendable {  // used under its callers' lock
    let isTerminal = isatty(STDERR_FILENO) != 0
    var lastDecile = -1
    var lastDraw = 0.0

    func update(_ label: String, done: Int, of total: Int, detail: String, secondsLeft: Double) {
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let width = 24, filled = Int(fraction * Double(width))
        let line = "\(label) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] "
            + "\(done)/\(total)  \(detail)  ETA \(ProgressBar.duration(secondsLeft))"
        if isTerminal {
            let now = Date().timeIntervalSince1970
            guard now - lastDraw > 0.1 || done == total else { return }
            lastDraw = now
            writeStandardError("\r\u{1B}[K" + line)
        } else {
            let decile = Int(fraction * 10)
            guard decile != lastDecile else { return }
            lastDecile = decile
            writeStandardError(line + "\n")
        }
    }

    /// Ends the bar's line with a message.
    func finish(_ message: String) {
        writeStandardError((isTerminal ? "\r\u{1B}[K" : "") + message + "\n")
        lastDecile = -1
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "--:--" }
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}
