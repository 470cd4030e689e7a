package solanatest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"

	solana "github.com/gagliardetto/solana-go"

	"github.com/incidentbot/incidentbot/internal/loaderv3"
)

// Transactions: the fake hands out blockhashes (getLatestBlockhash),
// valid for 150 slots as on a real cluster (BlockhashValiditySlots),
// takes transactions (sendTransaction) and reports their status
// (getSignatureStatuses). The only transaction it executes is the
// upgradeable loader's Upgrade, checked as the loader checks it: one
// instruction, its accounts in order with their flags, a valid signature
// by the program's upgrade authority, which must also be the buffer's.
// The Upgrade may follow a durable nonce's AdvanceNonceAccount (see
// SetNonceAccount): then the transaction's blockhash must be the nonce
// the account stores, however old, instead of a recent one; the nonce
// authority must have signed; landing it advances the nonce, so the same
// transaction never lands twice.
// It then upgrades the program as the loader does: ProgramData's slot
// becomes the current slot and its code the buffer's (zero-filled after
// it), the buffer is closed and its lamports go to the spill account.
// Subscribers of the ProgramData account are notified, so the ProgramData
// watcher sees the upgrade. Anything else is refused as a failed preflight.

// MainnetGenesisHash is mainnet-beta's genesis hash.
const MainnetGenesisHash = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"

// defaultGenesisHash is the fake cluster's genesis hash (not mainnet's).
const defaultGenesisHash = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"

// SetGenesisHash sets what getGenesisHash answers, e.g. MainnetGenesisHash.
func (s *Server) SetGenesisHash(h string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.genesis = h
}

// SetProgram stores an upgradeable program: its Program account and its
// ProgramData, deployed at slot, with authority (nil: immutable) and
// code. Pad code with zeros to leave room for a larger upgrade.
func (s *Server) SetProgram(program solana.PublicKey, slot uint64, authority *solana.PublicKey, code []byte) {
	pd, err := loaderv3.ProgramDataAddress(program)
	if err != nil {
		panic(err) // a program id always has a programdata address
	}
	s.SetAccount(program.String(), Account{Data: loaderv3.EncodeProgram(pd), Lamports: 1141440})
	s.SetAccount(pd.String(), Account{Data: loaderv3.EncodeProgramData(loaderv3.ProgramData{Slot: slot, Authority: authority}, code), Lamports: 2_000_000_000})
}

// SetBuffer stores a Buffer account holding code, written by authority
// (nil: a buffer nobody may use).
func (s *Server) SetBuffer(buffer solana.PublicKey, authority *solana.PublicKey, code []byte) {
	s.SetAccount(buffer.String(), Account{Data: loaderv3.EncodeBuffer(loaderv3.Buffer{Authority: authority}, code), Lamports: 1_500_000_000})
}

// AccountData returns the stored data of an account.
func (s *Server) AccountData(address string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[address]
	return append([]byte(nil), a.Data...), ok
}

// Sent returns the transactions sendTransaction accepted, oldest first.
func (s *Server) Sent() []*solana.Transaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*solana.Transaction(nil), s.sent...)
}

// blockhash is the blockhash of a slot: made up, but stable.
func blockhash(slot uint64) solana.Hash {
	return solana.Hash(sha256.Sum256(binary.LittleEndian.AppendUint64([]byte("solanatest blockhash"), slot)))
}

// BlockhashValiditySlots is how long a blockhash handed out by
// getLatestBlockhash stays valid: a transaction using it is refused once
// the slot passes the blockhash's slot plus this (the fake's block height
// is its slot).
const BlockhashValiditySlots = 150

// latestBlockhash answers getLatestBlockhash (s.mu held).
func (s *Server) latestBlockhash() any {
	h := blockhash(s.slot)
	last := s.slot + BlockhashValiditySlots
	s.blockhashes[h] = last
	return contextValue(s.slot, map[string]any{"blockhash": h.String(), "lastValidBlockHeight": last})
}

// SetNonceAccount stores an initialized durable nonce account (current
// version, owned by the system program) whose authority is authority,
// and returns its nonce: the blockhash of the transactions that use it.
func (s *Server) SetNonceAccount(address, authority solana.PublicKey) solana.Hash {
	s.mu.Lock()
	nonce := loaderv3.DurableNonce(blockhash(s.slot))
	s.mu.Unlock()
	s.SetAccount(address.String(), Account{Owner: SystemProgramID, Lamports: 1_447_680, Data: loaderv3.EncodeNonce(loaderv3.Nonce{
		Version: loaderv3.NonceVersionCurrent, State: loaderv3.NonceInitialized, Authority: authority, Blockhash: nonce, LamportsPerSignature: 5000,
	})})
	return nonce
}

// signatureStatuses answers getSignatureStatuses (s.mu held).
func (s *Server) signatureStatuses(params []json.RawMessage) (any, *rpcError) {
	var sigs []string
	if len(params) == 0 || json.Unmarshal(params[0], &sigs) != nil {
		return nil, &rpcError{Code: -32602, Message: "Invalid params: want an array of signatures"}
	}
	out := make([]any, len(sigs))
	for i, sig := range sigs {
		if slot, ok := s.landed[sig]; ok {
			out[i] = map[string]any{"slot": slot, "confirmations": nil, "err": nil, "status": map[string]any{"Ok": nil}, "confirmationStatus": "finalized"}
		}
	}
	return contextValue(s.slot, out), nil
}

// simulationFailed is a failed preflight, as a node reports it.
func simulationFailed(msg string, txErr any, logs ...string) *rpcError {
	return &rpcError{Code: -32002, Message: "Transaction simulation failed: " + msg, Data: map[string]any{
		"accounts": nil, "err": txErr, "logs": logs, "unitsConsumed": 0, "returnData": nil,
	}}
}

// instructionError is the failure of the transaction's instruction ix,
// of program.
func instructionError(ix int, program, name, why string) *rpcError {
	return simulationFailed(fmt.Sprintf("Error processing Instruction %d: %s", ix, why), map[string]any{"InstructionError": []any{ix, name}},
		"Program "+program+" invoke [1]", "Program log: "+why, "Program "+program+" failed: "+why)
}

// DecodeTransaction decodes a transaction as sendTransaction receives
// it: base64, or base58 when encoding is "base58" or empty.
func DecodeTransaction(encoded, encoding string) (*solana.Transaction, error) {
	var raw []byte
	var err error
	switch encoding {
	case "base64":
		raw, err = base64.StdEncoding.DecodeString(encoded)
	case "", "base58":
		var b solana.Base58
		err = b.UnmarshalJSON([]byte(`"` + encoded + `"`))
		raw = b
	default:
		return nil, fmt.Errorf("unsupported encoding %q", encoding)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", encoding, err)
	}
	tx, err := solana.TransactionFromBytes(raw)
	if err != nil {
		return nil, err
	}
	return tx, nil
}

// sendTransaction checks, executes and records a transaction; the
// ProgramData notification goes out after s.mu is released.
func (s *Server) sendTransaction(req request) (any, *rpcError) {
	s.mu.Lock()
	s.calls[req.Method]++
	result, notify, rerr := s.execute(req)
	s.mu.Unlock()
	if notify != nil {
		notify()
	}
	return result, rerr
}

func (s *Server) execute(req request) (any, func(), *rpcError) {
	var encoded string
	var opts options
	if len(req.Params) == 0 || json.Unmarshal(req.Params[0], &encoded) != nil {
		return nil, nil, &rpcError{Code: -32602, Message: "Invalid params: want an encoded transaction"}
	}
	if len(req.Params) > 1 {
		_ = json.Unmarshal(req.Params[1], &opts)
	}
	tx, err := DecodeTransaction(encoded, opts.Encoding)
	if err != nil {
		return nil, nil, &rpcError{Code: -32602, Message: "failed to deserialize solana_transaction::versioned::VersionedTransaction: " + err.Error()}
	}
	if len(tx.Signatures) == 0 || len(tx.Signatures) != int(tx.Message.Header.NumRequiredSignatures) || tx.VerifySignatures() != nil {
		return nil, nil, &rpcError{Code: -32003, Message: "Transaction signature verification failure"}
	}
	u, nonce, decodeErr := loaderv3.DecodeTransaction(tx)
	var nonceAcct Account
	if decodeErr == nil && nonce != nil {
		// A durable transaction: its blockhash is checked against the
		// nonce account instead of the recent blockhashes.
		var rerr *rpcError
		if nonceAcct, rerr = s.checkNonce(tx, *nonce); rerr != nil {
			return nil, nil, rerr
		}
	} else if last, ok := s.blockhashes[tx.Message.RecentBlockhash]; !ok || s.slot > last {
		return nil, nil, simulationFailed("Blockhash not found", "BlockhashNotFound")
	}
	if _, dup := s.landed[tx.Signatures[0].String()]; dup {
		return nil, nil, simulationFailed("This transaction has already been processed", "AlreadyProcessed")
	}
	ix := 0
	if nonce != nil {
		ix = 1
	}
	if decodeErr != nil {
		return nil, nil, instructionError(ix, LoaderID, "InvalidArgument", decodeErr.Error())
	}
	notify, rerr := s.upgrade(ix, u)
	if rerr != nil {
		return nil, nil, rerr
	}
	if nonce != nil {
		// The upgrade moved to a new slot: the nonce becomes its own.
		n, _ := loaderv3.DecodeNonce(nonceAcct.Data)
		n.Blockhash = loaderv3.DurableNonce(blockhash(s.slot))
		nonceAcct.Data = loaderv3.EncodeNonce(n)
		s.accounts[nonce.Account.String()] = nonceAcct
	}
	sig := tx.Signatures[0].String()
	s.landed[sig] = s.slot
	s.sent = append(s.sent, tx)
	return sig, notify, nil
}

// checkNonce checks a durable transaction's nonce as the runtime does
// (s.mu held): the account is an initialized, current nonce account of
// the system program, its nonce is the transaction's blockhash (else,
// as for an expired blockhash, BlockhashNotFound), and its authority is
// the one that signed the advance.
func (s *Server) checkNonce(tx *solana.Transaction, adv loaderv3.AdvanceNonce) (Account, *rpcError) {
	a, ok := s.accounts[adv.Account.String()]
	if !ok || a.Owner != SystemProgramID {
		return a, simulationFailed("Blockhash not found", "BlockhashNotFound")
	}
	n, err := loaderv3.DecodeNonce(a.Data)
	if err != nil || n.Usable() != nil || n.Blockhash != tx.Message.RecentBlockhash {
		return a, simulationFailed("Blockhash not found", "BlockhashNotFound")
	}
	if n.Authority != adv.Authority {
		return a, instructionError(0, SystemProgramID, "MissingRequiredSignature",
			fmt.Sprintf("Advance nonce account: Account %s must be a signer", n.Authority))
	}
	return a, nil
}

// upgrade applies u as the loader does (s.mu held).
func (s *Server) upgrade(ix int, u loaderv3.Upgrade) (func(), *rpcError) {
	instructionError := func(name, why string) *rpcError { return instructionError(ix, LoaderID, name, why) }
	prog, ok := s.accounts[u.Program.String()]
	if !ok {
		return nil, instructionError("InvalidAccountData", "Program account not found")
	}
	if pd, err := loaderv3.DecodeProgram(prog.Data); err != nil || pd != u.ProgramData {
		return nil, instructionError("InvalidAccountData", "Invalid Program account")
	}
	pdAcct, ok := s.accounts[u.ProgramData.String()]
	if !ok {
		return nil, instructionError("InvalidAccountData", "ProgramData account not found")
	}
	pd, err := loaderv3.DecodeProgramData(pdAcct.Data)
	if err != nil {
		return nil, instructionError("InvalidAccountData", "Invalid ProgramData account")
	}
	switch {
	case pd.Authority == nil:
		return nil, instructionError("Immutable", "Program not upgradeable")
	case *pd.Authority != u.Authority:
		return nil, instructionError("IncorrectAuthority", "Incorrect upgrade authority provided")
	}
	bufAcct, ok := s.accounts[u.Buffer.String()]
	if !ok {
		return nil, instructionError("InvalidArgument", "Buffer account not found")
	}
	buf, err := loaderv3.DecodeBuffer(bufAcct.Data)
	if err != nil {
		return nil, instructionError("InvalidArgument", "Invalid Buffer account")
	}
	if buf.Authority == nil || *buf.Authority != u.Authority {
		return nil, instructionError("IncorrectAuthority", "Buffer and upgrade authority don't match")
	}
	code := bufAcct.Data[loaderv3.BufferMetaLen:]
	if len(code) == 0 {
		return nil, instructionError("InvalidAccountData", "Buffer account too small")
	}
	if len(pdAcct.Data) < loaderv3.ProgramDataMetaLen+len(code) {
		return nil, instructionError("AccountDataTooSmall", "ProgramData account not large enough")
	}
	s.slot++
	data := make([]byte, len(pdAcct.Data))
	copy(data, loaderv3.EncodeProgramData(loaderv3.ProgramData{Slot: s.slot, Authority: pd.Authority}, code))
	pdAcct.Data = data
	s.accounts[u.ProgramData.String()] = pdAcct
	delete(s.accounts, u.Buffer.String())
	s.balances[u.Spill.String()] += bufAcct.Lamports
	slot, addr, a := s.slot, u.ProgramData.String(), pdAcct
	return func() {
		s.notify("accountSubscribe", addr, "accountNotification", contextValue(slot, accountJSON(a, nil)))
	}, nil
}
