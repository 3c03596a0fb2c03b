import Foundation
import FuzzSupport
import RateLimit

/// A users file (JSON records) from arbitrary bytes: users or a located
/// error. What parses must survive the gateway's own writer: encoding the
/// users and parsing that again gives the same users.
func check(_ input: [UInt8]) {
    guard let users = try? UsersFile.parse(Data(input), path: "fuzz.json") else { return }
    var again = Data("[".utf8)
    for (i, u) in users.enumerated() {
        if i > 0 { again.append(UInt8(ascii: ",")) }
        guard let one = try? UsersFile.encode(u) else { Fuzz.fail("users-file: cannot encode \(u)") }
        again.append(one)
    }
    again.append(UInt8(ascii: "]"))
    guard let back = try? UsersFile.parse(again, path: "again.json") else { Fuzz.fail("users-file: re-encoded users do not parse") }
    if back != users { Fuzz.fail("users-file: \(users) re-encoded as \(back)") }
}

@main struct Main { static func main() { Fuzz.main(check) } }
